#!/usr/bin/env bash
# build_go_tool NAME VERSION PACKAGE: prints the path of a Go tool the tests
# use, building it first from the Go module in the caller's folder (go.mod
# pins it as a tool, go.sum its checksums) when the cache does not have it.
# Build output goes to stderr. The cache is CSE_TOOLS_CACHE, not
# scripts/env.sh's CSE_CACHE, which is another folder.
build_go_tool() {
  local name="$1" version="$2" package="$3"
  local here cache bin tmp
  here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
  cache="${CSE_TOOLS_CACHE:-/root/.cache/cse-tools}"
  bin="$cache/$name-$version"
  if [ ! -x "$bin" ]; then
    if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
      export PATH="/usr/local/go/bin:$PATH"
    fi
    command -v go >/dev/null || { echo "$name build: no Go toolchain on PATH (need go >= 1.26, see go.mod)" >&2; return 1; }
    mkdir -p "$cache"
    echo "building $name $version into $bin (first run only; can take minutes)" >&2
    tmp="$bin.tmp.$$"
    # -trimpath and no VCS stamping: the binary depends only on go.mod/go.sum.
    if ! (cd "$here" && go build -trimpath -buildvcs=false -o "$tmp" "$package") >&2; then
      rm -f "$tmp"
      echo "$name build: go build failed in $here" >&2
      return 1
    fi
    mv "$tmp" "$bin"
  fi
  echo "$bin"
}
