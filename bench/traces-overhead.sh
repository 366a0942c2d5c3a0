#!/usr/bin/env bash
# docker-run overhead with tracing on and a real Jaeger receiving the traces:
# bench/overhead.py with an otlp-enabled config, Jaeger (tests/e2e's config)
# on its own loopback ports for the duration.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$CSE_ROOT"
JAEGER="$(bash tests/tools/jaeger/build.sh)"
export CSE_JAEGER_OTLP_GRPC_PORT=24317 CSE_JAEGER_OTLP_HTTP_PORT=24318 CSE_JAEGER_QUERY_PORT=26686 \
  CSE_JAEGER_QUERY_GRPC_PORT=26685 CSE_JAEGER_HEALTH_PORT=23133
"$JAEGER" --config tests/e2e/jaeger-config.yaml >/tmp/cse-bench-jaeger.log 2>&1 &
jaeger=$!
trap 'kill $jaeger 2>/dev/null || true; wait $jaeger 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$CSE_JAEGER_HEALTH_PORT/status" >/dev/null 2>&1 && break; sleep 0.2; done
kill -0 "$jaeger" 2>/dev/null || { echo "jaeger did not start: /tmp/cse-bench-jaeger.log" >&2; exit 1; }
cfg="$(mktemp)"
printf 'otlp:\n  enabled: true\n  endpoint: http://127.0.0.1:%s\n' "$CSE_JAEGER_OTLP_GRPC_PORT" >"$cfg"
python3 bench/overhead.py docker-run --config "$cfg" "$@"
traces="$(curl -fsS "http://127.0.0.1:$CSE_JAEGER_QUERY_PORT/api/traces?service=container-startup-exporter&limit=1000" \
  | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')"
echo "traces in Jaeger: $traces"
