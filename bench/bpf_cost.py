#!/usr/bin/env python3
"""In-kernel cost of each BPF program, from the kernel's own run-time
statistics (kernel.bpf_stats_enabled: run_time_ns / run_cnt per program), as
the exporter exports them (container_startup_exporter_bpf_program_*).

Workloads, measured one after the other (deltas per workload):
  docker     20 × docker run (10 --network none, 10 bridge): the tracked path
  exec       2000 × /bin/true from an untracked shell: fork/exec/exit rejects
  udp        200 000 × sendto() on a UDP socket to 127.0.0.1 from an untracked
             process: the sendto argument filter's early reject
Usage: bench/bpf_cost.py [--out FILE]
"""

import argparse
import json
import re
import socket
import subprocess
import time
from pathlib import Path

from benchlib import DOCKER, IMAGE, get, start_exporter, stop_exporter

PORT = 19701


def scrape():
    text = get(PORT, "/metrics")
    runs, secs = {}, {}
    for m in re.finditer(r'^container_startup_exporter_bpf_program_(runs|run_seconds)_total\{program="(\w+)"\} (\S+)$', text, re.M):
        (runs if m.group(1) == "runs" else secs)[m.group(2)] = float(m.group(3))
    return runs, secs


def settle():
    time.sleep(2.5)  # the exporter polls the kernel's statistics every second
    return scrape()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    a = ap.parse_args()
    p = start_exporter(PORT, "metrics:\n  bpf_program_stats: true\n")
    try:
        def docker():
            for i in range(20):
                net = ["--network", "none"] if i % 2 == 0 else []
                subprocess.run([DOCKER, "run", "--rm", *net, IMAGE, "true"], check=True, capture_output=True)

        def execs():
            subprocess.run(["sh", "-c", "i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done"], check=True)

        def udp():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.0.1", 0))
            addr = sink.getsockname()
            for _ in range(200_000):
                s.sendto(b"x", addr)

        results = {}
        prev = settle()
        for name, work in [("docker", docker), ("exec", execs), ("udp", udp)]:
            work()
            cur = settle()
            rows = {}
            for prog in cur[0]:
                n = cur[0][prog] - prev[0].get(prog, 0)
                t = cur[1].get(prog, 0) - prev[1].get(prog, 0)
                if n > 0:
                    rows[prog] = {"runs": int(n), "avg_ns": round(t * 1e9 / n, 1)}
            results[name] = rows
            prev = cur
    finally:
        stop_exporter(p)
    for name, rows in results.items():
        print(f"== {name}")
        for prog, r in sorted(rows.items(), key=lambda kv: -kv[1]["runs"]):
            print(f"  {prog:<22} runs {r['runs']:>9}  avg {r['avg_ns']:>8.1f} ns")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
