#!/usr/bin/env bash
# The Grafana dashboard against real data: the exporter on 127.0.0.1:19617, a
# real Prometheus on 127.0.0.1:19090 scraping it every second, a few container
# starts (network none and the default bridge), then
# tests/e2e/check_dashboard.py evaluates every panel query through
# Prometheus' HTTP API and checks every metric name against /metrics.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
source "$CSE_ROOT/tests/e2e/exporter-lib.sh"

BINARY="${CSE_EXPORTER_BIN:-$CSE_ROOT/target/release/container-startup-exporter}"
EXPORTER_ADDR=127.0.0.1:19617
PROM_ADDR=127.0.0.1:19090
METRICS="http://$EXPORTER_ADDR/metrics"
PROMETHEUS="${PROMETHEUS:-/usr/bin/prometheus}"
STARTS_NONE=3
STARTS_BRIDGE=2

passed=0
ok() { passed=$((passed + 1)); log "ok: $*"; }
die() { echo "50-dashboard: FAIL: $*" >&2; echo "50-dashboard: $passed passed, 1 failed"; exit 1; }

[ -x "$BINARY" ] || die "no exporter binary at $BINARY (cargo build --release)"
[ -x "$PROMETHEUS" ] || die "no Prometheus at $PROMETHEUS (Debian package prometheus)"
for addr in "$EXPORTER_ADDR" "$PROM_ADDR"; do
  if ss -Hltn "sport = :${addr##*:}" | grep -q .; then die "port ${addr##*:} is already in use"; fi
done

ensure_tracefs
ensure_dockerd
ensure_test_image

work="$(mktemp -d /tmp/cse-e2e-dashboard.XXXXXX)"
exporter_pid=""
prom_pid=""
cleanup() {
  local pid
  for pid in $prom_pid $exporter_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $prom_pid $exporter_pid; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

show_log() { echo "--- last lines of $1:" >&2; tail -20 "$1" >&2 || true; }

# prom_value EXPR: the first sample's value of an instant query, or "none".
prom_value() {
  curl -fsS --max-time 5 "http://$PROM_ADDR/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}

cat >"$work/config.yaml" <<EOF
http:
  listen_address: "$EXPORTER_ADDR"
log:
  level: info
EOF
"$BINARY" run --config "$work/config.yaml" >"$work/exporter.log" 2>&1 &
exporter_pid=$!
if ! wait_http "http://$EXPORTER_ADDR/readyz" 60; then
  show_log "$work/exporter.log"
  die "the exporter did not become ready on http://$EXPORTER_ADDR/readyz within 60 s"
fi
ok "exporter ready on $EXPORTER_ADDR"

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: container-startup-exporter
    static_configs:
      - targets: ["$EXPORTER_ADDR"]
EOF
"$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus-data" \
  --web.listen-address="$PROM_ADDR" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
wait_http "http://$PROM_ADDR/-/ready" 30 || { show_log "$work/prometheus.log"; die "Prometheus did not become ready on $PROM_ADDR"; }
deadline=$((SECONDS + 20))
until [ "$(prom_value 'up{job="container-startup-exporter"}')" = 1 ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "Prometheus has not scraped the exporter successfully within 20 s"
  sleep 0.5
done
ok "Prometheus scrapes the exporter"

count_starts "50-dashboard" "http://$EXPORTER_ADDR" "$work" "$STARTS_NONE" "$STARTS_BRIDGE" ||
  die "the exporter did not count the $((STARTS_NONE + STARTS_BRIDGE)) starts exactly (see above)"
ok "the exporter counted the $STARTS_NONE --network none and $STARTS_BRIDGE bridge starts exactly"

success='outcome="success"'
want="$(curl -fsS "$METRICS" | awk '/^container_startups_total\{/ && /outcome="success"/ {s += $NF} END {printf "%d", s}')"
# Prometheus has caught up once its latest sample holds the exporter's count.
deadline=$((SECONDS + 20))
until seen="$(prom_value "sum(container_startups_total{$success})")" && [ "$seen" != none ] && [ "${seen%.*}" -ge "$want" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "Prometheus did not see container_startups_total{$success} >= $want within 20 s (last: $seen)"
  sleep 0.5
done
sleep 3 # a few more scrapes, so that every rate window holds several samples
ok "Prometheus holds container_startups_total{$success} = $seen (exporter: $want)"

if python3 "$CSE_ROOT/tests/e2e/check_dashboard.py" "$CSE_ROOT/dashboards/container-startup.json" \
  --prometheus "http://$PROM_ADDR" --metrics "$METRICS" --contract "$CSE_ROOT/docs/contract.md" >"$work/check.out"; then
  cat "$work/check.out" >&2
  ok "every dashboard query returns data"
else
  cat "$work/check.out" >&2
  die "$(grep -m1 -v 'problems$' "$work/check.out")"
fi
echo "50-dashboard: $passed passed, 0 failed"
