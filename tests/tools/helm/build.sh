#!/usr/bin/env bash
# Prints the path of the helm v4.3.2 binary the tests use, building it first
# from this Go module (go.mod pins it as a tool, go.sum its checksums) when
# the cache does not have it yet. Build output goes to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CSE_TOOLS_CACHE:-/root/.cache/cse-tools}"
HELM="$CACHE/helm-v4.3.2"

if [ ! -x "$HELM" ]; then
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null || { echo "helm build: no Go toolchain on PATH (need go >= 1.26, see go.mod)" >&2; exit 1; }
  mkdir -p "$CACHE"
  echo "building helm v4.3.2 into $HELM (first run only)" >&2
  tmp="$HELM.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  (cd "$HERE" && go build -o "$tmp" helm.sh/helm/v4/cmd/helm) >&2 ||
    { echo "helm build: go build failed in $HERE" >&2; exit 1; }
  mv "$tmp" "$HELM"
fi
echo "$HELM"
