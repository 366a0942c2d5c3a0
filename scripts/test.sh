#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, then the end-to-end tests
# against the real Docker engine, Prometheus, Jaeger and helm. As root.
# Installs and starts what it needs. With CI=true, a privileged test that
# cannot run fails instead of skipping.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CSE_ROOT"

prepare_host
ensure_test_image

log "static checks"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

log "unit tests"
cargo test --locked --workspace

log "release build"
cargo build --locked --release

log "end-to-end tests"
python3 -m pytest -q -p no:cacheprovider tests/e2e
for t in tests/e2e/[0-9][0-9]-*.sh; do
  [ -e "$t" ] || continue
  log "running $t"
  bash "$t"
done
log "all tests passed"
