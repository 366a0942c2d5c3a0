#!/usr/bin/env bash
# Prints the path of the Jaeger v1.75.0 binary (cmd/jaeger, the v2 backend
# built on the OpenTelemetry collector) that the trace tests use, building it
# first from this Go module (go.mod pins it as a tool, go.sum its checksums)
# when the cache does not have it yet. The first build takes several minutes
# on two cores. Build output goes to stderr.
#
# The cache is the same folder as helm's (tests/tools/helm/build.sh):
# CSE_TOOLS_CACHE, not scripts/env.sh's CSE_CACHE, which is another folder.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CSE_TOOLS_CACHE:-/root/.cache/cse-tools}"
JAEGER="$CACHE/jaeger-v1.75.0"

if [ ! -x "$JAEGER" ]; then
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null || { echo "jaeger build: no Go toolchain on PATH (need go >= 1.26, see go.mod)" >&2; exit 1; }
  mkdir -p "$CACHE"
  echo "building jaeger v1.75.0 into $JAEGER (first run only; takes minutes)" >&2
  tmp="$JAEGER.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # -trimpath and no VCS stamping: the binary depends only on go.mod/go.sum.
  (cd "$HERE" && go build -trimpath -buildvcs=false -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger) >&2 ||
    { echo "jaeger build: go build failed in $HERE" >&2; exit 1; }
  mv "$tmp" "$JAEGER"
fi
echo "$JAEGER"
