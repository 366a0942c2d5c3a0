#!/usr/bin/env bash
# The Helm chart: lints strictly, renders the expected objects for the default
# values and each file in tests/e2e/helm-values/, renders a config that the
# exporter's own `check-config` accepts, and its schema rejects bad values
# naming the key. Needs Go (to build helm once) and python3 with venv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"

CHART="$CSE_ROOT/helm/container-startup-exporter"
VALUES_DIR="$CSE_ROOT/tests/e2e/helm-values"
BINARY="${CSE_EXPORTER_BIN:-$CSE_ROOT/target/release/container-startup-exporter}"
RELEASE=cse

HELM="$("$CSE_ROOT/tests/tools/helm/build.sh")" || { echo "40-helm: FAIL: could not build or find helm" >&2; exit 1; }

# PyYAML in a venv of our own, so the system Python stays untouched.
VENV="$CSE_CACHE/venv"
if ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
  log "creating $VENV with PyYAML"
  python3 -m venv "$VENV" || { echo "40-helm: FAIL: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pyyaml ||
    { echo "40-helm: FAIL: pip could not install pyyaml" >&2; exit 1; }
fi
PY="$VENV/bin/python"

work="$(mktemp -d /tmp/cse-e2e-helm.XXXXXX)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); log "ok: $*"; }
fail() { failed=$((failed + 1)); echo "40-helm: FAIL: $*" >&2; }

if [ -x "$BINARY" ]; then
  have_binary=1
elif [ "${CI:-}" = true ]; then
  fail "no exporter binary at $BINARY, so the rendered configs cannot be checked (build it before this test)"
  have_binary=0
else
  have_binary=0
  log "SKIP: check-config steps: no exporter binary at $BINARY yet (this would fail under CI=true)"
fi

cases=(default)
for f in "$VALUES_DIR"/*.yaml; do cases+=("$(basename "$f" .yaml)"); done

for case in "${cases[@]}"; do
  values=()
  [ "$case" = default ] || values=(-f "$VALUES_DIR/$case.yaml")

  if out="$("$HELM" lint --strict "$CHART" "${values[@]}" 2>&1)"; then
    ok "helm lint --strict ($case)"
  else
    fail "helm lint --strict ($case): $(grep -E 'ERROR|WARNING|Error' <<<"$out" | head -1)"
  fi

  rendered="$work/$case.yaml"
  if ! "$HELM" template "$RELEASE" "$CHART" --namespace default "${values[@]}" >"$rendered" 2>"$work/$case.err"; then
    fail "helm template ($case): $(head -3 "$work/$case.err" | tr '\n' ' ')"
    continue
  fi
  config="$work/$case.config.yaml"
  if "$PY" "$CSE_ROOT/tests/e2e/check_helm.py" "$case" "$rendered" --release "$RELEASE" --config-out "$config" >"$work/$case.check" 2>&1; then
    ok "rendered objects ($case)"
  else
    while read -r line; do fail "$line"; done <"$work/$case.check"
    [ -s "$work/$case.check" ] || fail "check_helm.py ($case) failed without output"
  fi

  if [ "$have_binary" = 1 ] && [ -s "$config" ]; then
    if out="$("$BINARY" check-config "$config" 2>&1)"; then
      ok "check-config accepts the ConfigMap's config ($case)"
    else
      fail "check-config rejects the ConfigMap's config ($case): $out"
    fi
  fi
done

# A config the schema lets through but the exporter must refuse (a ring
# buffer size that is no power of two): proves check-config really checks.
if [ "$have_binary" = 1 ] && [ -s "$work/default.config.yaml" ]; then
  bad="$work/bad-ring-buffer.yaml"
  sed 's/^\(  size_bytes:\).*/\1 5000/' "$work/default.config.yaml" >"$bad"
  grep -q 'size_bytes: 5000' "$bad" || fail "could not write the bad config for check-config"
  set +e
  out="$("$BINARY" check-config "$bad" 2>&1)"
  rc=$?
  set -e
  if [ "$rc" = 2 ] && grep -q 'size_bytes' <<<"$out" && grep -qF "$bad" <<<"$out"; then
    ok "check-config rejects ring_buffer.size_bytes: 5000 with exit 2, naming file and key"
  else
    fail "check-config on ring_buffer.size_bytes: 5000: exit $rc, expected 2 with a message naming $bad and size_bytes; got: $out"
  fi
fi

# Bad values: the schema must refuse them, naming the key.
bad_values=(
  "image.pullPolicy=Sometimes|/image/pullPolicy"
  "service.port=-1|/service/port"
  "port=70000|/port"
  "securityContext.priviledged=true|priviledged"
  "config.log.level=verbose|/config/log/level"
  "config.aggregator.record_timeout=soon|/config/aggregator/record_timeout"
  "config.ring_buffer.size_bytes=4096|/config/ring_buffer/size_bytes"
  "config.http.listen_address=127.0.0.1:1|listen_address"
  "otlp.enabled=true|/otlp/endpoint"
  "otlp.protocol=udp|/otlp/protocol"
  "otlp.protocol=http/json|/otlp/protocol"
)
for entry in "${bad_values[@]}"; do
  set_arg="${entry%%|*}"
  key="${entry#*|}"
  if out="$("$HELM" template "$RELEASE" "$CHART" --set "$set_arg" 2>&1 >/dev/null)"; then
    fail "schema accepted --set $set_arg"
  elif grep -qF "$key" <<<"$out"; then
    ok "schema rejects --set $set_arg naming $key"
  else
    fail "schema rejected --set $set_arg without naming $key: $(tr '\n' ' ' <<<"$out")"
  fi
  if "$HELM" lint --strict "$CHART" --set "$set_arg" >/dev/null 2>&1; then
    fail "helm lint --strict accepted --set $set_arg"
  fi
done

echo "40-helm: $passed passed, $failed failed"
[ "$failed" = 0 ]
