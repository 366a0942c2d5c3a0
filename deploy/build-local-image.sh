#!/usr/bin/env bash
# Builds the exporter's container image without any registry: a root
# filesystem holding the release binary, exactly the shared libraries `ldd`
# lists for it and the dynamic loader, turned into an image by `docker import`.
#
#   deploy/build-local-image.sh [--binary PATH] [--tag NAME:TAG]
#
# Defaults: target/release/container-startup-exporter, and the tag
# cse/container-startup-exporter:dev. Build the binary first
# (`cargo build --release`). deploy/Dockerfile is the registry-based
# equivalent for users.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER="${DOCKER:-/usr/bin/docker}"
BINARY="$ROOT/target/release/container-startup-exporter"
TAG="cse/container-startup-exporter:dev"
# Where the binary lives inside the image; the chart and tests call it there.
IMAGE_BINARY=/usr/local/bin/container-startup-exporter

die() { echo "build-local-image: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
    --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[ -x "$BINARY" ] || die "no executable at $BINARY; run 'cargo build --release' first"
command -v ldd >/dev/null || die "ldd not found (Debian package libc-bin)"

rootfs="$(mktemp -d /tmp/cse-image-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# Mount points the runtime fills in, a writable-by-nobody /tmp, and the
# directory the chart mounts the config file into.
mkdir -p "$rootfs"/{proc,sys,dev,tmp,etc/container-startup-exporter,usr/local/bin}
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
install -m 0755 "$BINARY" "$rootfs$IMAGE_BINARY"

# `ldd` prints "name => /path (addr)" for each library and "/path (addr)" for
# the loader; the vDSO has no path. Copy each file (following links) to the
# same path in the image, which is where the loader will look for it.
ldd_out="$(ldd "$BINARY" 2>&1)" || true
libs=()
if ! grep -q 'not a dynamic executable\|statically linked' <<<"$ldd_out"; then
  if grep -q 'not found' <<<"$ldd_out"; then
    die "ldd cannot resolve every library of $BINARY: $(grep 'not found' <<<"$ldd_out" | head -1 | xargs)"
  fi
  while read -r path; do
    libs+=("$path")
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out" | sort -u)
  [ "${#libs[@]}" -gt 0 ] || die "could not parse ldd output for $BINARY: $ldd_out"
fi
for lib in "${libs[@]}"; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

old_id="$("$DOCKER" image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
# Reproducible layer: fixed owner, order and timestamps.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$rootfs" -c . |
  "$DOCKER" import \
    -c "ENTRYPOINT [\"$IMAGE_BINARY\"]" \
    -c 'CMD ["run"]' \
    -c 'EXPOSE 9617' \
    - "$TAG" >/dev/null

new_id="$("$DOCKER" image inspect -f '{{.Id}}' "$TAG")"
# The image this tag named before would be left dangling: remove it.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  "$DOCKER" rmi "$old_id" >/dev/null 2>&1 || true
fi

echo "built $TAG from $BINARY with ${#libs[@]} shared object(s):" >&2
for lib in "${libs[@]}"; do echo "  $lib" >&2; done
