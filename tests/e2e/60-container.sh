#!/usr/bin/env bash
# The exporter as a container, with the least privilege it needs: the
# registry-free image (deploy/build-local-image.sh), the host's PID namespace,
# host network on a loopback port, a read-only root filesystem, the BTF,
# tracefs and cgroup mounts, and --cap-drop ALL plus only the capabilities
# docs/deploy.md lists. Each run must attach every probe and count exactly
# the container starts made after it is ready.
#
#  1. under containerd directly (ctr, as the kubelet's CRI would run the Helm
#     chart's pod), with exactly the chart's default set (BPF, PERFMON) and
#     containerd's default seccomp profile;
#  2. under Docker, with the capabilities it can grant: BPF and PERFMON where
#     Docker knows them, SYS_ADMIN (which the kernel accepts for both) where
#     it does not (Docker 20.10), with Docker's default seccomp profile.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
source "$CSE_ROOT/tests/e2e/exporter-lib.sh"

BINARY="${CSE_EXPORTER_BIN:-$CSE_ROOT/target/release/container-startup-exporter}"
IMAGE=cse/container-startup-exporter:dev
NAME=cse-e2e-exporter
ADDR=127.0.0.1:19618
METRICS="http://$ADDR/metrics"
CONFIG_DIR=/etc/container-startup-exporter
STARTS=3
# The containerd Docker uses (system-wide, or the one dockerd started itself);
# a namespace of our own keeps our objects apart.
if [ -z "${CTR_ADDRESS:-}" ]; then
  CTR_ADDRESS=/run/containerd/containerd.sock
  [ -S "$CTR_ADDRESS" ] || CTR_ADDRESS=/run/docker/containerd/containerd.sock
fi
CTR_NS=cse-e2e
# The Helm chart's default securityContext.capabilities.add.
CHART_CAPS=(BPF PERFMON)

passed=0
ok() { passed=$((passed + 1)); log "ok: $*"; }
die() { echo "60-container: FAIL: $*" >&2; echo "60-container: $passed passed, 1 failed"; exit 1; }

[ -x "$BINARY" ] || die "no exporter binary at $BINARY (cargo build --release)"
if ss -Hltn "sport = :${ADDR##*:}" | grep -q .; then die "port ${ADDR##*:} is already in use"; fi

ensure_tracefs
ensure_dockerd
ensure_test_image

work="$(mktemp -d /tmp/cse-e2e-container.XXXXXX)"
ctr_cmd() { ctr --address "$CTR_ADDRESS" --namespace "$CTR_NS" "$@"; }
cleanup() {
  "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
  if command -v ctr >/dev/null && [ -S "$CTR_ADDRESS" ]; then
    ctr_cmd task kill -s SIGKILL "$NAME" >/dev/null 2>&1 || true
    ctr_cmd task delete -f "$NAME" >/dev/null 2>&1 || true
    ctr_cmd container delete "$NAME" >/dev/null 2>&1 || true
    ctr_cmd images rm "docker.io/$IMAGE" >/dev/null 2>&1 || true
    # Removing the image's content is asynchronous; the namespace goes once it is empty.
    for _ in $(seq 1 20); do
      ctr --address "$CTR_ADDRESS" namespaces rm "$CTR_NS" >/dev/null 2>&1 && break
      sleep 0.2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$CSE_ROOT/deploy/build-local-image.sh" --binary "$BINARY" --tag "$IMAGE" 2>"$work/image.log" ||
  { cat "$work/image.log" >&2; die "deploy/build-local-image.sh failed"; }
ok "built $IMAGE without a registry"

# The image holds the binary and its libraries only: it must run as it is.
"$DOCKER" run --rm --network none --cap-drop ALL -v "$CSE_ROOT/config/default.yaml:/default.yaml:ro" \
  "$IMAGE" check-config /default.yaml >"$work/check.log" 2>&1 ||
  { cat "$work/check.log" >&2; die "the image cannot run 'check-config' (missing shared library?)"; }
ok "the image runs (check-config on config/default.yaml)"

mkdir -p "$work/config"
printf 'http:\n  listen_address: "%s"\n' "$ADDR" >"$work/config/config.yaml"

# cap_mask NAME...: the CapEff bit mask of those capabilities, in hex.
cap_mask() {
  local mask=0 cap
  declare -A bit=([SYS_ADMIN]=21 [SYS_PTRACE]=19 [SYS_RESOURCE]=24 [DAC_READ_SEARCH]=2 [DAC_OVERRIDE]=1
    [NET_ADMIN]=12 [IPC_LOCK]=14 [PERFMON]=38 [BPF]=39 [CHECKPOINT_RESTORE]=40)
  for cap in "$@"; do mask=$((mask | (1 << ${bit[$cap]}))); done
  printf '%016x\n' "$mask"
}

# exercise WHAT PID CAPS...: the exporter whose host PID is PID has exactly
# the capabilities CAPS, every probe attached, and counts STARTS starts
# (busybox `true`, --network none) exactly.
exercise() {
  local what="$1" pid="$2"; shift 2
  local want_caps got_caps
  want_caps="$(cap_mask "$@")"
  got_caps="$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")"
  [ "$got_caps" = "$want_caps" ] || die "$what: the exporter's CapEff is $got_caps, expected $want_caps ($*)"
  ok "$what: the exporter holds exactly CapEff $got_caps ($*)"

  local probes failed_probes
  probes="$(curl -fsS "$METRICS" | grep -c '^container_startup_exporter_probe_attached{' || true)"
  failed_probes="$(curl -fsS "$METRICS" | grep '^container_startup_exporter_probe_attached{' | awk '$NF != 1' || true)"
  [ "$probes" -gt 0 ] || die "$what: /metrics has no container_startup_exporter_probe_attached series"
  [ -z "$failed_probes" ] || die "$what: probes failed to attach: $(head -3 <<<"$failed_probes" | tr '\n' ' ')"
  ok "$what: all $probes probes attached"

  # Count only now, after the exporter's own start is over.
  mkdir -p "$work/$what"
  count_starts "$what" "http://$ADDR" "$work/$what" "$STARTS" 0 ||
    die "$what: the containerised exporter did not count the $STARTS starts exactly (see above)"
  ok "$what: counted exactly the $STARTS container starts"
}

# wait_ready ALIVE_CMD: until /readyz answers (0), or the exporter stops
# running (ALIVE_CMD fails) or 60 s pass (1).
wait_ready() {
  local deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -fsS -o /dev/null --max-time 2 "http://$ADDR/readyz" 2>/dev/null && return 0
    eval "$1" || { echo "60-container: the exporter stopped before it was ready" >&2; return 1; }
    sleep 0.3
  done
  return 1
}

# --- 1. containerd (ctr) with the chart's exact capabilities ---------------
if ! command -v ctr >/dev/null || [ ! -S "$CTR_ADDRESS" ]; then
  die "ctr or containerd's socket $CTR_ADDRESS is missing (Debian package containerd)"
fi
"$DOCKER" save "$IMAGE" -o "$work/image.tar"
ctr_cmd images import "$work/image.tar" >/dev/null || die "ctr images import failed"
# ctr starts from containerd's default capability set: drop each of those.
drop_args=()
for cap in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP \
  NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE; do
  drop_args+=(--cap-drop "CAP_$cap")
done
add_args=()
for cap in "${CHART_CAPS[@]}"; do add_args+=(--cap-add "CAP_$cap"); done
ctr_cmd run -d --log-uri "file://$work/ctr-exporter.log" --net-host --read-only --seccomp \
  --with-ns "pid:/proc/$$/ns/pid" \
  "${drop_args[@]}" "${add_args[@]}" \
  --mount "type=bind,src=/sys/kernel/btf,dst=/sys/kernel/btf,options=rbind:ro" \
  --mount "type=bind,src=/sys/kernel/tracing,dst=/sys/kernel/tracing,options=rbind:ro" \
  --mount "type=bind,src=/sys/fs/cgroup,dst=/sys/fs/cgroup,options=rbind:ro" \
  --mount "type=bind,src=$work/config,dst=$CONFIG_DIR,options=rbind:ro" \
  "docker.io/$IMAGE" "$NAME" \
  /usr/local/bin/container-startup-exporter run --config "$CONFIG_DIR/config.yaml" >/dev/null ||
  die "ctr run of $IMAGE failed"
if ! wait_ready "ctr_cmd task ls | grep -q '^$NAME .*RUNNING'"; then
  tail -5 "$work/ctr-exporter.log" >&2 || true
  die "containerd: the exporter (caps ${CHART_CAPS[*]}, default seccomp) did not become ready on $ADDR/readyz"
fi
ok "containerd: exporter ready with only ${CHART_CAPS[*]}, containerd's default seccomp profile"
ctr_pid="$(ctr_cmd task ls | awk -v n="$NAME" '$1 == n {print $2}')"
[ -n "$ctr_pid" ] || die "containerd: cannot find the exporter task's PID"
exercise containerd "$ctr_pid" "${CHART_CAPS[@]}"
ctr_cmd task kill "$NAME" >/dev/null 2>&1 || true
for _ in $(seq 1 50); do
  ctr_cmd task delete "$NAME" >/dev/null 2>&1 && break
  sleep 0.1
done
ctr_cmd task kill -s SIGKILL "$NAME" >/dev/null 2>&1 || true
ctr_cmd task delete -f "$NAME" >/dev/null 2>&1 || true
ctr_cmd container delete "$NAME" >/dev/null 2>&1 || true
wait_port_free() {
  local deadline=$((SECONDS + 10))
  while ss -Hltn "sport = :${ADDR##*:}" | grep -q .; do
    [ "$SECONDS" -lt "$deadline" ] || die "port ${ADDR##*:} still in use after stopping the exporter"
    sleep 0.2
  done
}
wait_port_free

# --- 2. Docker -------------------------------------------------------------
if "$DOCKER" create --name "$NAME-probe" --cap-drop ALL --cap-add BPF --cap-add PERFMON "$TEST_IMAGE" true >/dev/null 2>&1; then
  "$DOCKER" rm "$NAME-probe" >/dev/null
  docker_caps=("${CHART_CAPS[@]}")
else
  # Docker 20.10 does not know CAP_BPF/CAP_PERFMON ("unknown capability");
  # CAP_SYS_ADMIN is what the kernel accepts in place of both.
  docker_caps=(SYS_ADMIN)
fi
cap_args=()
for cap in "${docker_caps[@]}"; do cap_args+=(--cap-add "$cap"); done

"$DOCKER" run -d --name "$NAME" \
  --pid=host --network host --read-only \
  --cap-drop ALL "${cap_args[@]}" \
  -v /sys/kernel/btf:/sys/kernel/btf:ro \
  -v /sys/kernel/tracing:/sys/kernel/tracing:ro \
  -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
  -v "$work/config:$CONFIG_DIR:ro" \
  "$IMAGE" run --config "$CONFIG_DIR/config.yaml" >/dev/null || die "docker run of $IMAGE failed"
if ! wait_ready "[ \"\$(\"\$DOCKER\" inspect -f '{{.State.Running}}' $NAME)\" = true ]"; then
  "$DOCKER" logs --tail 20 "$NAME" >&2 || true
  hint=""
  if [ "${docker_caps[*]}" = SYS_ADMIN ]; then
    hint=" (this Docker cannot grant CAP_BPF/CAP_PERFMON; the exporter must accept CAP_SYS_ADMIN in their place, as the kernel does)"
  fi
  die "docker: the containerised exporter (caps ${docker_caps[*]}) did not become ready on $ADDR/readyz$hint"
fi
ok "docker: exporter ready with --cap-drop ALL --cap-add ${docker_caps[*]}, default seccomp"
exercise docker "$("$DOCKER" inspect -f '{{.State.Pid}}' "$NAME")" "${docker_caps[@]}"
"$DOCKER" rm -f "$NAME" >/dev/null

echo "60-container: $passed passed, 0 failed"
