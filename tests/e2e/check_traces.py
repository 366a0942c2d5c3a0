#!/usr/bin/env python3
"""Checks the traces that a real Jaeger received from the exporter against
the exporter's own records (/api/v1/startups, or the JSON lines that
`trace --json` printed), for a given set of container
ids: exactly one trace per id, a `container.start` root with the container's
id, one `container.start.<phase>` child per span of the record, with the
record's durations, linked to the root and inside its time range, and the
error status on failed starts.

Only the ids given are looked at: other containers started on the same
machine meanwhile have traces too, and are ignored.

Standard library only. Prints `ok: ...` / `FAIL: ...` lines and, last,
`check_traces: N passed, M failed`; exits 1 if anything failed.
"""

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request

passed = 0
failed = 0


def ok(msg):
    global passed
    passed += 1
    print(f"ok: {msg}", flush=True)


def fail(msg):
    global failed
    failed += 1
    print(f"FAIL: {msg}", flush=True)


def check(cond, msg):
    if cond:
        ok(msg)
    else:
        fail(msg)
    return cond


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def tags(obj):
    return {t["key"]: t["value"] for t in obj.get("tags") or []}


def records(args):
    if args.records_file:
        # `trace --json`: one record per line; the last line may be partial
        out = []
        with open(args.records_file) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out
    return get_json(f"{args.exporter}/api/v1/startups")


def traces(jaeger, service):
    q = urllib.parse.urlencode({"service": service, "limit": 2000, "lookback": "2h"})
    return get_json(f"{jaeger}/api/traces?{q}").get("data") or []


def roots_by_id(all_traces, ids):
    """container id -> [(trace, root span)] for the roots naming that id."""
    found = {i: [] for i in ids}
    for t in all_traces:
        for s in t["spans"]:
            if s["operationName"] != "container.start":
                continue
            cid = tags(s).get("container.id")
            if cid in found:
                found[cid].append((t, s))
    return found


def complete(expected, recs, all_traces):
    """Every id has its record and a trace with all its spans."""
    by_id = {r["container_id"]: r for r in recs}
    roots = roots_by_id(all_traces, expected)
    for cid in expected:
        r = by_id.get(cid)
        if r is None or len(roots[cid]) != 1:
            return False
        t, _ = roots[cid][0]
        if len(t["spans"]) != len(r["spans"]) + 1:
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jaeger", required=True, help="query base URL, e.g. http://127.0.0.1:16686")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--exporter", help="exporter base URL: records from /api/v1/startups")
    src.add_argument("--records-file", help="records as JSON lines, from `trace --json`")
    ap.add_argument("--service", default="container-startup-exporter")
    ap.add_argument("--expect", action="append", default=[], metavar="ID=OUTCOME",
                    help="a container id and its outcome (success, failure)")
    ap.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the traces")
    ap.add_argument("--deterministic", action="store_true", help="trace id must be the id's first 32 characters")
    args = ap.parse_args()

    expected = {}
    for e in args.expect:
        cid, _, outcome = e.partition("=")
        expected[cid] = outcome or "success"

    # Spans reach Jaeger shortly after the records: poll until complete.
    deadline = time.monotonic() + args.wait
    recs, all_traces, last_error = [], [], None
    while True:
        try:
            recs = records(args)
            all_traces = traces(args.jaeger, args.service)
            if complete(expected, recs, all_traces):
                break
        except OSError as e:
            last_error = e
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)

    if last_error is not None and not all_traces:
        fail(f"cannot query Jaeger or the exporter: {last_error}")
    by_id = {}
    for r in recs:
        by_id.setdefault(r["container_id"], []).append(r)
    roots = roots_by_id(all_traces, expected)
    mine = sum(len(v) for v in roots.values())
    check(mine == len(expected), f"{mine} traces for our {len(expected)} container ids (exactly one each)")

    for cid, outcome in expected.items():
        short = cid[:12]
        recs_for = by_id.get(cid, [])
        if not check(len(recs_for) == 1, f"{short}: one record of the exporter (got {len(recs_for)})"):
            continue
        r = recs_for[0]
        check(r["outcome"] == outcome, f"{short}: record outcome {r['outcome']} (want {outcome})")
        if not check(len(roots[cid]) == 1, f"{short}: one container.start root in Jaeger (got {len(roots[cid])})"):
            continue
        t, root = roots[cid][0]
        rt = tags(root)
        proc = t["processes"][root["processID"]]
        check(proc["serviceName"] == args.service, f"{short}: service.name {proc['serviceName']}")
        ptags = tags(proc)
        check("host.name" in ptags and "service.version" in ptags, f"{short}: resource has host.name and service.version")
        if args.deterministic:
            check(t["traceID"] == cid[:32], f"{short}: trace id {t['traceID']} is the id's first 32 hex digits")
        check(rt.get("container.id") == cid, f"{short}: root container.id is the cidfile's id")
        check(rt.get("container.runtime") == r["runtime"], f"{short}: container.runtime {rt.get('container.runtime')}")
        check(rt.get("container_startup.outcome") == outcome, f"{short}: root outcome attribute {rt.get('container_startup.outcome')}")
        check(not root.get("references"), f"{short}: root has no parent")
        want_root_us = (r["end_ns"] - r["start_ns"]) / 1000
        check(abs(root["duration"] - want_root_us) <= 1, f"{short}: root duration {root['duration']} us = record {want_root_us:.0f} us")
        is_error = rt.get("error") is True or rt.get("otel.status_code") == "ERROR"
        if outcome == "success":
            check(not is_error, f"{short}: successful start has no error status")
        else:
            check(is_error, f"{short}: failed start has error status")
            check(rt.get("otel.status_description") == r.get("failure_reason"),
                  f"{short}: status description {rt.get('otel.status_description')!r} is the failure reason")

        children = [s for s in t["spans"] if s is not root]
        root_end = root["startTime"] + root["duration"]
        links = all(
            len(s.get("references") or []) == 1
            and s["references"][0]["refType"] == "CHILD_OF"
            and s["references"][0]["spanID"] == root["spanID"]
            for s in children
        )
        check(links, f"{short}: all {len(children)} children are CHILD_OF the root")
        # µs in Jaeger: allow one for the truncation of each end
        inside = all(s["startTime"] >= root["startTime"] - 1 and s["startTime"] + s["duration"] <= root_end + 1
                     for s in children)
        check(inside, f"{short}: children lie inside the root's time range")

        want = sorted(("container.start." + s["phase"], (s["end_ns"] - s["start_ns"]) / 1000) for s in r["spans"])
        got = sorted((s["operationName"], s["duration"]) for s in children)
        names_match = [n for n, _ in want] == [n for n, _ in got]
        phases = sorted({n.rsplit(".", 1)[1] for n, _ in want})
        check(names_match, f"{short}: phase spans {phases} match the record ({len(want)} spans)")
        if names_match:
            durations = all(abs(g - w) <= 1 for (_, g), (_, w) in zip(got, want))
            check(durations, f"{short}: span durations equal the record's (within 1 us)")
        record_phases = sorted(p["phase"] for p in r["phases"])
        check(record_phases == phases, f"{short}: phases totals of the record name the same phases")

    print(f"check_traces: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
