#!/usr/bin/env bash
# Fresh Debian 12, as root: install what is missing, build, and start the
# exporter on its embedded default configuration (port 9617).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CSE_ROOT"

prepare_host
cargo build --release --locked
BIN="$CSE_ROOT/target/release/container-startup-exporter"

if curl -fsS http://127.0.0.1:9617/healthz >/dev/null 2>&1; then
  log "an exporter already answers on :9617; leaving it running"
  exit 0
fi
nohup "$BIN" run >/var/log/container-startup-exporter.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:9617/readyz >/dev/null 2>&1; then
    log "exporter running (pid $pid): http://127.0.0.1:9617/metrics, logs in /var/log/container-startup-exporter.log"
    log "watch starts live: $BIN trace"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "the exporter did not become ready; see /var/log/container-startup-exporter.log" >&2
tail -5 /var/log/container-startup-exporter.log >&2 || true
exit 1
