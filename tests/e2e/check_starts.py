#!/usr/bin/env python3
"""Counts container starts on a running exporter exactly, even while other
containers start on the same host. Standard library only.

    check_starts.py snapshot BASE_URL OUT.json
    check_starts.py verify BASE_URL BEFORE.json MINE [--timeout S]

`snapshot` stores container_startups_total{outcome="success"} (summed over
runtimes) together with the records of /api/v1/startups, read so that both
describe the same moment. `verify` waits until every container listed in MINE
(lines "<container id> <network>", network "none" or "bridge") has a
completed record, then asserts:

  * each of them was recorded exactly once, with outcome success;
  * a bridge container has a veth_create phase, a --network none one has not;
  * the counter rose by exactly the number of new success records: the
    test's own starts plus any other start the host made meanwhile (listed;
    under CI=true there must be none, so the rise is exactly the own starts).

Prints one summary line; on failure one line naming what is wrong, exit 1.
"""
import json
import os
import sys
import time
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def success_total(base):
    total = 0.0
    for line in get(base + "/metrics").splitlines():
        if line.startswith("container_startups_total{") and 'outcome="success"' in line:
            total += float(line.rsplit(None, 1)[1])
    return int(total)


def consistent(base):
    """Counter and records read with no start completing in between."""
    for _ in range(50):
        before = success_total(base)
        records = json.loads(get(base + "/api/v1/startups"))
        if success_total(base) == before:
            return {"counter": before, "records": records}
        time.sleep(0.1)
    raise SystemExit("check_starts: the counter never held still long enough to read it with the records")


def key(r):
    return (r.get("container_id"), r.get("start_ns"))


def verify(base, before_path, mine_path, timeout):
    with open(before_path) as f:
        before = json.load(f)
    mine = {}
    with open(mine_path) as f:
        for line in f:
            if line.strip():
                cid, network = line.split()
                mine[cid] = network
    seen_before = {key(r) for r in before["records"]}

    deadline = time.monotonic() + timeout
    while True:
        now = consistent(base)
        new = [r for r in now["records"] if key(r) not in seen_before]
        have = {r.get("container_id") for r in new}
        if all(cid in have for cid in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    time.sleep(1.0)  # anything still in flight for our containers lands now
    now = consistent(base)
    new = [r for r in now["records"] if key(r) not in seen_before]

    errors = []
    for cid, network in mine.items():
        recs = [r for r in new if r.get("container_id") == cid]
        if len(recs) != 1:
            errors.append("container %s (%s) has %d records in /api/v1/startups, expected 1" % (cid[:12], network, len(recs)))
            continue
        r = recs[0]
        if r.get("outcome") != "success":
            errors.append("container %s (%s) recorded with outcome %r, expected success" % (cid[:12], network, r.get("outcome")))
        phases = {p.get("phase") for p in r.get("phases", [])}
        if network == "bridge" and "veth_create" not in phases:
            errors.append("bridge container %s has no veth_create phase (phases: %s)" % (cid[:12], sorted(phases)))
        if network == "none" and "veth_create" in phases:
            errors.append("--network none container %s has a veth_create phase" % cid[:12])
    new_success = [r for r in new if r.get("outcome") == "success"]
    others = [r for r in new_success if r.get("container_id") not in mine]
    delta = now["counter"] - before["counter"]
    if delta != len(new_success):
        errors.append("container_startups_total{outcome=\"success\"} rose by %d, but %d new success records "
                      "appeared (%d own starts, %d others)" % (delta, len(new_success), len(mine), len(others)))
    if others and os.environ.get("CI") == "true":
        errors.append("%d success record(s) for containers this test did not start (%s); nothing else "
                      "starts containers under CI" % (len(others), ", ".join(r.get("container_id", "?")[:12] for r in others)))
    if errors:
        print("check_starts: FAIL: " + errors[0])
        for e in errors[1:]:
            print("check_starts:   also: " + e)
        return 1
    note = ""
    if others:
        note = " plus %d start(s) by something else on this host: %s" % (
            len(others), ", ".join(r.get("container_id", "?")[:12] for r in others))
    print("check_starts: container_startups_total{outcome=\"success\"} rose by exactly %d: the %d own starts%s"
          % (delta, len(mine), note))
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "snapshot":
        with open(sys.argv[3], "w") as f:
            json.dump(consistent(sys.argv[2]), f)
        return 0
    if len(sys.argv) >= 5 and sys.argv[1] == "verify":
        timeout = float(sys.argv[6]) if len(sys.argv) == 7 and sys.argv[5] == "--timeout" else 30.0
        return verify(sys.argv[2], sys.argv[3], sys.argv[4], timeout)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
