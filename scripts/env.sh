#!/usr/bin/env bash
# Shared helpers for the setup, test and benchmark scripts: bring up the real
# components (tracefs, dockerd, a local image) idempotently.
set -euo pipefail

CSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CSE_CACHE="${CSE_CACHE:-/root/.cache/container-startup-exporter}"
# Debian's docker.io client, not whatever newer client sits earlier on PATH.
DOCKER="${DOCKER:-/usr/bin/docker}"
TEST_IMAGE="${TEST_IMAGE:-cse-test/busybox:latest}"

# Debian packages the build, the tests and the benchmarks use.
PACKAGES=(clang-16 llvm-16 libbpf-dev bpftool linux-libc-dev docker.io prometheus busybox-static
  iproute2 util-linux procps curl jq python3-venv hyperfine)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    # docker.io's postinst would start dockerd through systemd; we start it ourselves
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# What every script that runs the exporter needs on the host.
prepare_host() {
  install_packages
  ensure_tracefs
  ensure_dockerd
}

ensure_tracefs() {
  if [ ! -e /sys/kernel/tracing/events ]; then
    mount -t tracefs nodev /sys/kernel/tracing
    log "mounted tracefs at /sys/kernel/tracing"
  fi
}

ensure_dockerd() {
  if "$DOCKER" info >/dev/null 2>&1; then return 0; fi
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/cse-dockerd.log 2>&1 &
  for _ in $(seq 1 100); do
    if "$DOCKER" info >/dev/null 2>&1; then log "dockerd is up"; return 0; fi
    sleep 0.2
  done
  echo "dockerd did not come up in 20 s; see /var/log/cse-dockerd.log" >&2
  tail -20 /var/log/cse-dockerd.log >&2 || true
  return 1
}

# A tiny image from Debian's busybox-static: no registry is reachable here.
ensure_test_image() {
  if "$DOCKER" image inspect "$TEST_IMAGE" >/dev/null 2>&1; then return 0; fi
  local root
  root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh true false echo sleep cat ls; do ln -s busybox "$root/bin/$applet"; done
  printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
  tar -C "$root" -c . | "$DOCKER" import -c 'ENV PATH=/bin' - "$TEST_IMAGE" >/dev/null
  rm -rf "$root"
  log "imported $TEST_IMAGE"
}
