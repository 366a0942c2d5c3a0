#!/usr/bin/env python3
"""Resident memory of the exporter (default configuration) after N container
starts (default 1000: 90 % --network none, 10 % bridge), with the counts of
what it saw, dropped and evicted. Usage: bench/rss.py [-n N] [--out FILE]"""

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

from benchlib import DOCKER, IMAGE, get, start_exporter, stop_exporter

PORT = 19702


def status(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1)) for k in ("VmRSS", "VmHWM")}


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric_sum(text, name):
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--out")
    a = ap.parse_args()
    p = start_exporter(PORT)
    try:
        at_start = status(p.pid)
        # idle cost: the drain timer wakes the daemon every 10 ms
        c0, t_idle = cpu_seconds(p.pid), time.monotonic()
        time.sleep(20)
        idle_cpu = (cpu_seconds(p.pid) - c0) / (time.monotonic() - t_idle)
        t0 = time.monotonic()
        for i in range(a.n):
            net = [] if i % 10 == 0 else ["--network", "none"]
            subprocess.run([DOCKER, "run", "--rm", *net, IMAGE, "true"], check=True, capture_output=True)
            if i % 100 == 99:
                get(PORT, "/metrics")
        time.sleep(1)
        busy_cpu = cpu_seconds(p.pid) - c0
        text = get(PORT, "/metrics")
        res = {
            "starts": a.n,
            "elapsed_s": round(time.monotonic() - t0, 1),
            "idle_cpu_fraction_of_one_core": round(idle_cpu, 5),
            "rss_kib_at_start": at_start["VmRSS"],
            "rss_kib_after": status(p.pid)["VmRSS"],
            "peak_rss_kib": status(p.pid)["VmHWM"],
            "cpu_seconds_total_incl_idle": round(busy_cpu, 2),
            "startups_total": metric_sum(text, "container_startups_total"),
            "events_total": metric_sum(text, "container_startup_exporter_events_total"),
            "events_dropped_total": metric_sum(text, "container_startup_exporter_events_dropped_total"),
            "table_evictions_total": metric_sum(text, "container_startup_exporter_table_evictions_total"),
            "records_abandoned_total": metric_sum(text, "container_startup_exporter_records_abandoned_total"),
        }
    finally:
        stop_exporter(p)
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
