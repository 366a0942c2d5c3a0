#!/usr/bin/env bash
# OTLP traces in a real Jaeger (v1.75.0, cmd/jaeger, in-memory, loopback
# only), with the exporter on 127.0.0.1:19627 and a real dockerd:
#
#  1. gRPC (the default): three `--network none` starts, one on the default
#     bridge and one failing (`/nonexistent`, exit 127); tests/e2e/check_traces.py
#     compares Jaeger's traces with the exporter's /api/v1/startups: one trace
#     per container id, the root and its phase children, parent links,
#     durations, time ranges, the error status of the failed start.
#  2. HTTP/protobuf, chosen through OTEL_EXPORTER_OTLP_PROTOCOL and
#     OTEL_EXPORTER_OTLP_ENDPOINT over a file that says grpc: the variables win.
#  3. Collector down: the exporter stays ready, counts the starts, counts the
#     dropped spans; then Jaeger comes up and later starts' traces arrive.
#  4. Collector that accepts connections and never answers: spans are dropped
#     with reason queue_full, and SIGTERM still ends the exporter within the
#     flush deadline (5 s).
#  5. The `trace --json` subcommand with tracing on: the records it prints and
#     the traces in Jaeger have the same phases and numbers.
#
# Each phase has a fresh Jaeger. Other containers started on this machine
# meanwhile are traced too: every check filters by the ids started here.
# Needs root, tracefs, dockerd, Go (first run: builds Jaeger, minutes), python3.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"

NAME=30-traces
BINARY="${CSE_EXPORTER_BIN:-$CSE_ROOT/target/release/container-startup-exporter}"
EXPORTER_ADDR=127.0.0.1:19627
EXPORTER="http://$EXPORTER_ADDR"
export CSE_JAEGER_OTLP_GRPC_PORT="${CSE_JAEGER_OTLP_GRPC_PORT:-14317}"
export CSE_JAEGER_OTLP_HTTP_PORT="${CSE_JAEGER_OTLP_HTTP_PORT:-14318}"
export CSE_JAEGER_QUERY_PORT="${CSE_JAEGER_QUERY_PORT:-16686}"
export CSE_JAEGER_QUERY_GRPC_PORT="${CSE_JAEGER_QUERY_GRPC_PORT:-16685}"
export CSE_JAEGER_HEALTH_PORT="${CSE_JAEGER_HEALTH_PORT:-13133}"
JAEGER_QUERY="http://127.0.0.1:$CSE_JAEGER_QUERY_PORT"
CHECK="$CSE_ROOT/tests/e2e/check_traces.py"
# Port of the collector that never answers (phase 4).
BLACKHOLE_PORT="${CSE_BLACKHOLE_PORT:-14319}"

passed=0
failed=0
ok() { passed=$((passed + 1)); log "ok: $*"; }
fail() { failed=$((failed + 1)); echo "$NAME: FAIL: $*" >&2; }
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
finish() {
  echo "$NAME: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
die() {
  fail "$*"
  finish || true
  exit 1
}

for port in "${EXPORTER_ADDR##*:}" "$CSE_JAEGER_OTLP_GRPC_PORT" "$CSE_JAEGER_OTLP_HTTP_PORT" \
  "$CSE_JAEGER_QUERY_PORT" "$CSE_JAEGER_QUERY_GRPC_PORT" "$CSE_JAEGER_HEALTH_PORT" "$BLACKHOLE_PORT"; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use"; fi
done

ensure_tracefs
ensure_dockerd
ensure_test_image

JAEGER="$("$CSE_ROOT/tests/tools/jaeger/build.sh")" || die "could not build or find jaeger"
if [ -z "${CSE_EXPORTER_BIN:-}" ]; then
  log "cargo build --release (a no-op when up to date)"
  (cd "$CSE_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$BINARY" ] || die "no exporter binary at $BINARY"

work="$(mktemp -d /tmp/cse-e2e-traces.XXXXXX)"
exporter_pid=""
jaeger_pid=""
blackhole_pid=""
cleanup() {
  local pid
  for pid in $exporter_pid $jaeger_pid $blackhole_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $exporter_pid $jaeger_pid $blackhole_pid; do wait "$pid" 2>/dev/null || true; done
  # --rm removes them; a container left by an interrupted run is removed here
  local c
  if [ -f "$work/containers" ]; then
    while read -r c; do "$DOCKER" rm -f "$c" >/dev/null 2>&1 || true; done <"$work/containers"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

show_log() { echo "--- last lines of $1:" >&2; tail -30 "$1" >&2 || true; }

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }

wait_http_200() { # URL SECONDS
  for _ in $(seq 1 $(($2 * 10))); do
    [ "$(http_code "$1")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

start_jaeger() {
  "$JAEGER" --config "$CSE_ROOT/tests/e2e/jaeger-config.yaml" >"$work/jaeger-$1.log" 2>&1 &
  jaeger_pid=$!
  wait_http_200 "http://127.0.0.1:$CSE_JAEGER_HEALTH_PORT/status" 30 || {
    show_log "$work/jaeger-$1.log"
    die "jaeger did not become healthy"
  }
  log "jaeger ($1) is up, pid $jaeger_pid"
}

# SIGTERM, then SIGKILL after 3 s: its graceful stop can wait ~10 s for the
# query API's idle connections, and its in-memory store is thrown away anyway.
stop_jaeger() {
  [ -n "$jaeger_pid" ] || return 0
  kill "$jaeger_pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$jaeger_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$jaeger_pid" 2>/dev/null || true
  wait "$jaeger_pid" 2>/dev/null || true
  jaeger_pid=""
}

# exporter config: OTLP to ENDPOINT with PROTOCOL, queue QUEUE spans, export
# timeout TIMEOUT (default 10s)
write_config() { # FILE ENDPOINT PROTOCOL QUEUE [TIMEOUT]
  cat >"$1" <<EOF
http:
  listen_address: "$EXPORTER_ADDR"
otlp:
  enabled: true
  endpoint: "$2"
  protocol: $3
  max_queue_size: $4
  timeout: ${5:-10s}
EOF
}

# The OTEL_* variables of this shell, as `env -u` options: cleared for the
# exporter so that only the ones a phase gives apply.
no_otel=()
for v in $(env | sed -n 's/^\(OTEL_[A-Z_]*\)=.*/\1/p'); do no_otel+=(-u "$v"); done

# start_exporter CONFIG LOG [VAR=VALUE...]
start_exporter() {
  local cfg="$1" logf="$2"
  shift 2
  env "${no_otel[@]}" "$@" "$BINARY" --config "$cfg" >"$logf" 2>&1 &
  exporter_pid=$!
  wait_http_200 "$EXPORTER/readyz" 30 || {
    show_log "$logf"
    die "exporter did not become ready"
  }
  log "exporter is ready, pid $exporter_pid"
}

# stop_exporter: SIGTERM; sets stop_ms to how long it took to exit; fails on
# a non-zero exit status. (Not in a subshell: wait needs the parent.)
stop_ms=0
stop_exporter() {
  local t0 rc=0
  t0=$(date +%s%N)
  kill -TERM "$exporter_pid"
  wait "$exporter_pid" || rc=$?
  exporter_pid=""
  stop_ms=$((($(date +%s%N) - t0) / 1000000))
  return "$rc"
}

# run_container NETWORK [CMD...]: prints the container id (from --cidfile)
# and docker's exit status. Runs in a subshell (process substitution), so the
# ids for cleanup go to a file.
run_container() {
  local net="$1"
  shift
  local cid="$work/cid.$RANDOM$RANDOM"
  local rc=0
  "$DOCKER" run --rm --network "$net" --cidfile "$cid" "$TEST_IMAGE" "$@" >/dev/null 2>>"$work/docker.err" || rc=$?
  [ -s "$cid" ] || { echo "no cidfile for docker run $* (rc $rc)" >&2; return 1; }
  cat "$cid" >>"$work/containers"
  echo >>"$work/containers"
  echo "$(cat "$cid") $rc"
}

# check_jaeger NAME DESCRIPTION CHECK-ARGS...: tests/e2e/check_traces.py
# against the query API, one pass or fail with its own counts.
check_jaeger() {
  local name="$1" what="$2"
  shift 2
  if python3 "$CHECK" --jaeger "$JAEGER_QUERY" --deterministic "$@" >"$work/check-$name.out"; then
    ok "$what ($(tail -1 "$work/check-$name.out"))"
  else
    cat "$work/check-$name.out" >&2
    fail "$what ($(tail -1 "$work/check-$name.out"))"
  fi
}

metric_sum() { # NAME: sum over all label sets
  curl -s --max-time 2 "$EXPORTER/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# --- 1. gRPC -----------------------------------------------------------------
log "phase 1: gRPC to a running Jaeger"
start_jaeger grpc
write_config "$work/grpc.yaml" "http://127.0.0.1:$CSE_JAEGER_OTLP_GRPC_PORT" grpc 2048
start_exporter "$work/grpc.yaml" "$work/exporter-grpc.log"
expect=()
for _ in 1 2 3; do
  read -r id rc < <(run_container none true) || die "docker run failed"
  check "docker run --network none true exits 0" [ "$rc" = 0 ]
  expect+=(--expect "$id=success")
done
read -r id rc < <(run_container bridge true) || die "docker run (bridge) failed"
check "docker run --network bridge true exits 0" [ "$rc" = 0 ]
expect+=(--expect "$id=success")
read -r failed_id rc < <(run_container none /nonexistent) || die "docker run /nonexistent left no cidfile"
check "docker run /nonexistent exits 127" [ "$rc" = 127 ]
expect+=(--expect "$failed_id=failure")
check_jaeger grpc "phase 1: Jaeger has the traces of the exporter's records" --exporter "$EXPORTER" "${expect[@]}"
check "phase 1: no spans dropped" [ "$(metric_sum container_startup_exporter_spans_dropped_total)" = 0 ]
if stop_exporter; then ok "phase 1: SIGTERM: exporter exited 0 in $stop_ms ms"; else fail "phase 1: exporter exit status non-zero"; fi
stop_jaeger

# --- 2. HTTP/protobuf through the variables ------------------------------------
log "phase 2: HTTP/protobuf chosen by OTEL_* variables over a file that says grpc"
start_jaeger http
write_config "$work/http.yaml" "http://127.0.0.1:1" grpc 2048
start_exporter "$work/http.yaml" "$work/exporter-http.log" \
  OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$CSE_JAEGER_OTLP_HTTP_PORT" \
  OTEL_SERVICE_NAME=cse-e2e-http
read -r id rc < <(run_container none true) || die "docker run failed"
check_jaeger http "phase 2: trace over HTTP/protobuf, service.name from OTEL_SERVICE_NAME" \
  --exporter "$EXPORTER" --service cse-e2e-http --expect "$id=success"
if stop_exporter; then ok "phase 2: SIGTERM: exporter exited 0 in $stop_ms ms"; else fail "phase 2: exporter exit status non-zero"; fi
stop_jaeger

# --- 3. collector down, then up ------------------------------------------------
log "phase 3: collector down, then up"
write_config "$work/down.yaml" "http://127.0.0.1:$CSE_JAEGER_OTLP_GRPC_PORT" grpc 2048
start_exporter "$work/down.yaml" "$work/exporter-down.log"
rss0=$(rss_kib "$exporter_pid")
starts0=$(metric_sum container_startups_total)
down_ids=()
for _ in 1 2 3; do
  read -r id rc < <(run_container none true) || die "docker run failed"
  down_ids+=("$id")
done
for id in "${down_ids[@]}"; do
  for _ in $(seq 1 100); do
    curl -s --max-time 2 "$EXPORTER/api/v1/startups?container_id=$id" | grep -q "\"$id\"" && break
    sleep 0.1
  done
done
starts1=$(metric_sum container_startups_total)
check "phase 3: container_startups_total counts the 3 starts while the collector is down ($starts0 -> $starts1)" \
  [ $((starts1 - starts0)) -ge 3 ]
dropped=0
for _ in $(seq 1 150); do
  dropped=$(metric_sum container_startup_exporter_spans_dropped_total)
  [ "$dropped" -gt 0 ] && break
  sleep 0.1
done
check "phase 3: spans_dropped_total rises while the collector is down ($dropped)" [ "$dropped" -gt 0 ]
check "phase 3: /readyz stays 200 while the collector is down" [ "$(http_code "$EXPORTER/readyz")" = 200 ]
check "phase 3: metrics keep flowing" [ "$(http_code "$EXPORTER/metrics")" = 200 ]
start_jaeger up
up_expect=()
for _ in 1 2; do
  read -r id rc < <(run_container none true) || die "docker run failed"
  up_expect+=(--expect "$id=success")
done
check_jaeger up "phase 3: export resumed by itself once Jaeger came up" \
  --exporter "$EXPORTER" --wait 60 "${up_expect[@]}"
rss1=$(rss_kib "$exporter_pid")
log "exporter RSS ${rss0} KiB -> ${rss1} KiB"
grep -h -E 'trace spans dropped|trace export works again' "$work/exporter-down.log" | head -3 >&2 || true
if stop_exporter; then ok "phase 3: SIGTERM: exporter exited 0 in $stop_ms ms"; else fail "phase 3: exporter exit status non-zero"; fi
stop_jaeger

# --- 4. collector that never answers ---------------------------------------------
log "phase 4: a collector that accepts connections and never answers"
python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
conns = []
end = time.monotonic() + 300  # bounded, in case nothing kills it
s.settimeout(1)
while time.monotonic() < end:
    try:
        conns.append(s.accept()[0])  # accepted, never read, never answered
    except socket.timeout:
        pass
' "$BLACKHOLE_PORT" &
blackhole_pid=$!
# 16 spans: one start (about 10 spans) is in flight, the next cannot fit. A
# 60 s export timeout: only the flush deadline can end the exporter sooner.
write_config "$work/hang.yaml" "http://127.0.0.1:$BLACKHOLE_PORT" grpc 16 60s
start_exporter "$work/hang.yaml" "$work/exporter-hang.log"
for _ in 1 2 3; do
  run_container none true >/dev/null || die "docker run failed"
done
full=0
for _ in $(seq 1 100); do
  full=$(curl -s --max-time 2 "$EXPORTER/metrics" | awk '$1 == "container_startup_exporter_spans_dropped_total{reason=\"queue_full\"}" { print $2 }')
  [ "${full:-0}" -gt 0 ] && break
  sleep 0.1
done
check "phase 4: spans dropped with reason queue_full (${full:-0})" [ "${full:-0}" -gt 0 ]
check "phase 4: /readyz stays 200 while exports hang" [ "$(http_code "$EXPORTER/readyz")" = 200 ]
if stop_exporter; then
  # the flush deadline (5 s) plus the pipeline's own teardown (1-2 s here)
  check "phase 4: SIGTERM with a hung 60 s export: exited 0 in $stop_ms ms (flush deadline 5000 ms)" [ "$stop_ms" -lt 10000 ]
else
  fail "phase 4: exporter exit status non-zero"
fi
check "phase 4: the unflushed spans are logged" grep -q 'not exported before shutdown' "$work/exporter-hang.log"
kill "$blackhole_pid" 2>/dev/null || true
wait "$blackhole_pid" 2>/dev/null || true
blackhole_pid=""

# --- 5. the trace subcommand ---------------------------------------------------
log "phase 5: trace --json exports the same starts it prints"
start_jaeger trace
printf 'otlp:\n  enabled: true\n  endpoint: "http://127.0.0.1:%s"\n' "$CSE_JAEGER_OTLP_GRPC_PORT" >"$work/trace.yaml"
env "${no_otel[@]}" "$BINARY" --config "$work/trace.yaml" trace --json >"$work/trace.jsonl" 2>"$work/trace.log" &
exporter_pid=$!
for _ in $(seq 1 100); do
  grep -q "tracing container starts" "$work/trace.log" && break
  sleep 0.1
done
grep -q "tracing container starts" "$work/trace.log" || { show_log "$work/trace.log"; die "trace did not start"; }
trace_expect=()
for net in none bridge; do
  read -r id rc < <(run_container "$net" true) || die "docker run failed"
  trace_expect+=(--expect "$id=success")
done
check_jaeger trace "phase 5: trace --json and Jaeger agree" --records-file "$work/trace.jsonl" "${trace_expect[@]}"
if stop_exporter; then ok "phase 5: SIGTERM: trace exited 0 in $stop_ms ms"; else fail "phase 5: trace exit status non-zero"; fi
stop_jaeger

finish
