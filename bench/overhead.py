#!/usr/bin/env python3
"""Overhead of the exporter on the host, measured as pairs of interleaved runs.

  docker-run  `docker run --rm --network none IMAGE true`, wall time, one run
              with the exporter attached and one without, per pair; the order
              inside a pair alternates (ABBA) so drift hits both sides alike.
  exec-storm  2000 × fork+exec of /bin/true from an untracked shell, per run.

The exporter is started (and waited for until /readyz) before each "with" run
and stopped after it, so "without" really runs with no probe attached; each
run waits SETTLE_S after that, on both sides.
Reports medians, p90 and the median of the per-pair ratios; writes JSON.

Usage: bench/overhead.py docker-run|exec-storm [-n PAIRS] [--out FILE]
       [--config FILE]   (e.g. a config that enables OTLP export)
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from benchlib import DOCKER, IMAGE, start_exporter, stop_exporter

PORT = 19700
SETTLE_S = 1.0


def docker_run():
    t = time.perf_counter()
    subprocess.run([DOCKER, "run", "--rm", "--network", "none", IMAGE, "true"], check=True, capture_output=True)
    return time.perf_counter() - t


def exec_storm():
    t = time.perf_counter()
    subprocess.run(["sh", "-c", "i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done"], check=True)
    return time.perf_counter() - t


def p90(v):
    return statistics.quantiles(v, n=10)[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["docker-run", "exec-storm"])
    ap.add_argument("-n", type=int, default=40, help="pairs")
    ap.add_argument("--out")
    ap.add_argument("--config")
    a = ap.parse_args()
    work = docker_run if a.workload == "docker-run" else exec_storm
    for _ in range(3):  # warm caches on both sides
        work()
    with_, without = [], []
    for i in range(a.n):
        order = [True, False] if i % 2 == 0 else [False, True]
        for attached in order:
            # the same settling time on both sides: loading the programs (or
            # detaching them) must not overlap the measured run
            if attached:
                p = start_exporter(PORT, Path(a.config).read_text() if a.config else "")
                time.sleep(SETTLE_S)
                with_.append(work())
                stop_exporter(p)
            else:
                time.sleep(SETTLE_S)
                without.append(work())
    ratios = [w / wo for w, wo in zip(with_, without)]
    res = {
        "workload": a.workload,
        "pairs": a.n,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "config": a.config,
        "median_with_s": statistics.median(with_),
        "median_without_s": statistics.median(without),
        "median_ratio": statistics.median(with_) / statistics.median(without),
        "median_of_pair_ratios": statistics.median(ratios),
        "p90_with_s": p90(with_),
        "p90_without_s": p90(without),
        "with_s": with_,
        "without_s": without,
    }
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items() if k not in ("with_s", "without_s")}
    print(json.dumps(summary, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
