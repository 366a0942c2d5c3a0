# shellcheck shell=bash
# Helpers shared by the end-to-end tests that run the exporter (50, 60);
# source after scripts/env.sh.

# wait_http URL SECONDS: until URL answers 2xx; 1 on timeout.
wait_http() {
  local url="$1" deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# start_containers N NETWORK MINE_FILE: N sequential `docker run --rm` of the
# busybox test image running `true`, on NETWORK (none or bridge, Docker's
# default); appends "<container id> <network>" for each to MINE_FILE.
start_containers() {
  local n="$1" network="$2" mine="$3" i cidfile
  local args=()
  [ "$network" = none ] && args=(--network none)
  cidfile="$(mktemp -u /tmp/cse-e2e-cid.XXXXXX)"
  for i in $(seq 1 "$n"); do
    "$DOCKER" run --rm --cidfile "$cidfile" "${args[@]}" "$TEST_IMAGE" true >/dev/null ||
      { rm -f "$cidfile"; echo "docker run #$i (network $network) failed" >&2; return 1; }
    printf '%s %s\n' "$(cat "$cidfile")" "$network" >>"$mine"
    rm -f "$cidfile"
  done
}

# count_starts WHAT BASE_URL WORKDIR N_NONE N_BRIDGE: starts the containers
# and checks with check_starts.py that the exporter at BASE_URL counted
# exactly those (plus, outside CI, whatever else started meanwhile).
count_starts() {
  local what="$1" base="$2" dir="$3" n_none="$4" n_bridge="$5"
  local checker="$CSE_ROOT/tests/e2e/check_starts.py"
  : >"$dir/mine"
  python3 "$checker" snapshot "$base" "$dir/before.json" || return 1
  start_containers "$n_none" none "$dir/mine" || return 1
  start_containers "$n_bridge" bridge "$dir/mine" || return 1
  python3 "$checker" verify "$base" "$dir/before.json" "$dir/mine" --timeout 30 >"$dir/starts.out" || {
    echo "$what: $(head -1 "$dir/starts.out")" >&2
    return 1
  }
  log "$what: $(cat "$dir/starts.out")"
}
