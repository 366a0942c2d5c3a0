"""End to end, as a user runs it: the release binary attached to the real
kernel, real `docker run`s through dockerd → containerd → shim → runc, and a
real Prometheus scraping /metrics."""

import os
import subprocess
import tempfile
import time

from conftest import (
    BIN,
    DOCKER,
    IMAGE,
    Exporter,
    docker_run,
    free_port,
    http_get,
    metric,
    prom_query,
    sh,
    wait_for,
)

STARTS = "container_startups_total"
PHASE_COUNT = "container_startup_phase_duration_seconds_count"

# Which phases a start has: a failing entrypoint stops after rootfs_setup
# (runc looks the executable up after pivot_root and exits); veth only with
# the bridge network.
COMMON = ["overlay_mount", "shim_start", "runc_create", "cgroup_setup", "namespace_create", "rootfs_setup"]
PHASES = {
    "none": COMMON + ["runc_init", "exec"],
    "bridge": COMMON + ["veth_create", "runc_init", "exec"],
    "failure": COMMON,
}
ALL_PHASES = COMMON + ["veth_create", "runc_init", "exec"]


def wait_starts(exporter, before, n):
    return wait_for(
        lambda: metric(exporter.metrics(), STARTS) - before >= n and exporter.metrics(),
        20,
        f"{n} more container starts on /metrics",
    )


def test_docker_runs_are_counted_exactly_with_their_phases(exporter, prometheus):
    before = exporter.metrics()
    for _ in range(5):
        docker_run("--network", "none", IMAGE, "true")
    for _ in range(2):
        docker_run(IMAGE, "true")
    failed = docker_run("--network", "none", IMAGE, "/does-not-exist", check=False)
    assert failed.returncode != 0, "the failing entrypoint must fail"

    after = wait_starts(exporter, metric(before, STARTS), 8)
    time.sleep(0.5)  # nothing more may arrive
    after = exporter.metrics()

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta(STARTS, outcome="success", runtime="runc") == 7
    assert delta(STARTS, outcome="failure", runtime="runc") == 1
    assert delta(STARTS, outcome="timeout") == 0
    assert delta("container_startup_duration_seconds_count", outcome="success") == 7
    starts = {"none": 5, "bridge": 2, "failure": 1}
    for phase in ALL_PHASES:
        want = sum(n for kind, n in starts.items() if phase in PHASES[kind])
        assert delta(PHASE_COUNT, phase=phase, runtime="runc") == want, phase
    assert delta("container_startup_exporter_events_dropped_total") == 0
    assert delta("container_startup_exporter_records_abandoned_total") == 0

    recs = exporter.startups()[-8:]
    assert [r["outcome"] for r in recs] == ["success"] * 7 + ["failure"]
    for r in recs[:5]:
        assert [p["phase"] for p in r["phases"]] == PHASES["none"]
        assert "network" not in r
    for r in recs[5:7]:
        assert [p["phase"] for p in r["phases"]] == PHASES["bridge"]
        assert r["network"]["veth_peer"].startswith("veth")
        assert r["network"]["netns_inum"] == r["namespaces"]["net"]
    fail = recs[7]
    assert [p["phase"] for p in fail["phases"]] == PHASES["failure"]
    assert "exited with status" in fail["failure_reason"]
    for r in recs:
        assert len(r["container_id"]) == 64
        assert r["identity"]["consistent"] is True
        assert r["identity"]["cgroup"] == r["container_id"]
        assert "args" not in r.get("entrypoint", {}), "entrypoint arguments must not be recorded by default"
        assert r["start_ns"] <= min(s["start_ns"] for s in r["spans"])
        # docker run takes 0.1-1 s here; a total outside that is a bug
        assert 0.05 < r["duration_seconds"] < 5, r["duration_seconds"]

    # Prometheus scraped the exporter and can compute quantiles from it.
    target = f"127.0.0.1:{exporter.port}"
    wait_for(
        lambda: prom_query(prometheus, f'sum(container_startups_total{{instance="{target}"}}) >= {metric(after, STARTS)}'),
        20,
        "Prometheus to scrape the new starts",
    )
    res = prom_query(
        prometheus,
        "histogram_quantile(0.9, sum by (le, phase) (rate(container_startup_phase_duration_seconds_bucket[1m])))",
    )
    by_phase = {r["metric"]["phase"]: float(r["value"][1]) for r in res}
    assert set(ALL_PHASES) <= set(by_phase), by_phase
    assert 0 < by_phase["exec"] < 10, by_phase


def test_metrics_pass_promtool(exporter):
    text = exporter.metrics_text()
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_namespace_inums_equal_the_containers(exporter):
    cid = sh(DOCKER, "run", "-d", "--rm", IMAGE, "sleep", "30").stdout.strip()
    try:
        pid = sh(DOCKER, "inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
        want = {}
        for ns in ["mnt", "uts", "ipc", "pid", "net", "cgroup", "user"]:
            link = os.readlink(f"/proc/{pid}/ns/{ns}")  # e.g. "mnt:[4026532175]"
            want[ns] = int(link.split("[")[1].rstrip("]"))
        recs = wait_for(lambda: exporter.startups(cid), 10, f"the record of {cid}")
        assert len(recs) == 1
        got = recs[0]["namespaces"]
        assert {ns: got[ns] for ns in want} == want
        assert got["created"] == ["mnt", "uts", "ipc", "pid", "net"]
        assert recs[0]["entrypoint"]["pid"] == int(pid)

        # docker exec runs processes in the container: not a start.
        before = exporter.metrics()
        sh(DOCKER, "exec", cid, "true")
        sh(DOCKER, "exec", cid, "echo", "hi")
        time.sleep(1)
        after = exporter.metrics()
        assert metric(after, STARTS) == metric(before, STARTS)
        seen = metric(after, "container_startup_exporter_events_total", type="exec") - metric(
            before, "container_startup_exporter_events_total", type="exec"
        )
        assert seen >= 2, "the exec'd processes were seen, and not counted as starts"
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], capture_output=True)


def test_endpoints(exporter):
    assert http_get(exporter.url + "/healthz") == (200, "ok\n")
    assert http_get(exporter.url + "/readyz")[0] == 200
    m = exporter.metrics()
    assert metric(m, "container_startup_exporter_build_info") == 1
    attached = {dict(ls)["probe"]: v for (n, ls), v in m.items() if n == "container_startup_exporter_probe_attached"}
    assert len(attached) == 29 and all(v == 1 for v in attached.values()), attached
    assert len(exporter.startups()) <= 256


def test_trace_prints_a_timeline(host):
    proc = subprocess.Popen([str(BIN), "trace"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        cid = sh(DOCKER, "run", "-d", "--rm", "--network", "none", IMAGE, "true").stdout.strip()
        time.sleep(1.5)
    finally:
        proc.terminate()
    out, _ = proc.communicate(10)
    lines = out.splitlines()
    head = [i for i, line in enumerate(lines) if line.startswith(cid[:12])]
    assert head, out
    block = lines[head[0] : head[0] + 10]
    assert "runc  success  total" in block[0]
    names = [line.split()[0] for line in block[2:] if line.startswith("  ")]
    assert names == ["overlay_mount", "shim_start", "runc_create", "cgroup_setup", "namespace_create",
                     "rootfs_setup", "runc_init", "exec"], block


# ---------------------------------------------------------------- bad input


def test_check_config_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("aggregator:\n  record_timeout: 5s\n")
    r = sh(str(BIN), "check-config", str(good), check=False)
    assert r.returncode == 0, r.stderr

    cases = {
        "aggregator:\n  record_timout: 5s\n": "aggregator.record_timout: unknown field `record_timout`",
        "ring_buffer:\n  size_bytes: 1000\n": "ring_buffer.size_bytes: must be a power of two",
        "http:\n  listen_address: nowhere\n": "http.listen_address: ",
        "metrics:\n  phase_buckets: {explicit: [1, 0.5]}\n": "metrics.phase_buckets: bounds must be strictly increasing",
    }
    for text, want in cases.items():
        f = tmp_path / "bad.yaml"
        f.write_text(text)
        r = sh(str(BIN), "check-config", str(f), check=False)
        assert r.returncode == 2, (text, r)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {f}: {want}"), r.stderr
    r = sh(str(BIN), "check-config", str(tmp_path / "missing.yaml"), check=False)
    assert r.returncode == 2 and "missing.yaml: cannot read" in r.stderr


def bpf_programs():
    out = sh("bpftool", "prog", "show").stdout
    return out.count("name handle_exec")


def test_bad_config_stops_before_attaching(host, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("tracking:\n  runtime_processes: []\n")
    before = bpf_programs()
    r = sh(str(BIN), "--config", str(f), "run", check=False, timeout=20)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {f}: tracking.runtime_processes: must name at least one process"
    assert bpf_programs() == before


def test_port_in_use_is_one_line_and_attaches_nothing(host, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        f = tmp_path / "c.yaml"
        f.write_text(f"http:\n  listen_address: 127.0.0.1:{port}\n")
        before = bpf_programs()
        r = sh(str(BIN), "--config", str(f), check=False, timeout=20)
    assert r.returncode == 3, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0] and "in use" in lines[0], r.stderr
    assert bpf_programs() == before


def test_not_privileged_is_one_line(host):
    d = tempfile.mkdtemp(prefix="cse-unpriv-")  # pytest's tmp_path is not readable by nobody
    os.chmod(d, 0o755)
    f = os.path.join(d, "c.yaml")
    with open(f, "w") as fh:
        fh.write(f"http:\n  listen_address: 127.0.0.1:{free_port()}\n")
    os.chmod(f, 0o644)
    r = sh("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(BIN), "--config", str(f), check=False)
    assert r.returncode == 3, r
    assert r.stderr.strip().splitlines() == [
        "error: missing capabilities CAP_BPF, CAP_PERFMON: run as root, or grant CAP_BPF and CAP_PERFMON "
        "(or CAP_SYS_ADMIN where the engine cannot grant those)"
    ]


def in_private_mounts(script, tmp_path):
    """Runs the exporter after `script` changes mounts in a private mount
    namespace: real faults, invisible to the rest of the host."""
    f = tmp_path / "c.yaml"
    f.write_text(f"http:\n  listen_address: 127.0.0.1:{free_port()}\n")
    return sh("unshare", "-m", "--propagation", "private", "sh", "-c", f"{script} && exec {BIN} --config {f}",
              check=False, timeout=30)


def test_missing_btf_and_tracefs(host, tmp_path):
    r = in_private_mounts("mount --bind /dev/null /sys/kernel/btf/vmlinux", tmp_path)
    assert r.returncode == 3
    assert r.stderr.strip().startswith("error: no kernel BTF at /sys/kernel/btf/vmlinux"), r.stderr
    r = in_private_mounts("umount -l /sys/kernel/tracing; (umount -l /sys/kernel/debug/tracing 2>/dev/null || true)",
                          tmp_path)
    assert r.returncode == 3
    assert r.stderr.strip().startswith("error: tracefs is not mounted"), r.stderr


def test_probe_that_cannot_attach_degrades_its_phase(host, tmp_path):
    """Hides the sendto tracepoints from this exporter only: veth_create is
    lost, everything else keeps working and the failure is exported."""
    port = free_port()
    empty = tmp_path / "empty"
    empty.mkdir()
    hide = " && ".join(
        f"mount --bind {empty} /sys/kernel/tracing/events/syscalls/{tp}" for tp in ["sys_enter_sendto", "sys_exit_sendto"]
    )
    e = Exporter(port)
    e.start(wrapper=("unshare", "-m", "--propagation", "private", "sh", "-c", f'{hide} && exec "$0" "$@"'))
    try:
        m = e.metrics()
        attached = {dict(ls)["probe"]: v for (n, ls), v in m.items() if n == "container_startup_exporter_probe_attached"}
        assert attached["enter_sendto"] == 0 and attached["exit_sendto"] == 0
        assert sum(attached.values()) == len(attached) - 2
        degraded = {dict(ls)["phase"]: v for (n, ls), v in m.items() if n == "container_startup_exporter_phase_degraded"}
        assert degraded == {p: 1 if p == "veth_create" else 0 for p in ALL_PHASES}
        before = metric(m, STARTS)
        docker_run(IMAGE, "true")
        wait_starts(e, before, 1)
        rec = e.startups()[-1]
        assert rec["outcome"] == "success"
        assert [p["phase"] for p in rec["phases"]] == PHASES["none"]
        assert "probe not attached" in e.log.read_text()
    finally:
        e.stop()


def test_sigterm_exits_cleanly_and_detaches(host):
    before = bpf_programs()
    e = Exporter(free_port()).start()
    assert bpf_programs() == before + 1
    e.proc.terminate()
    assert e.proc.wait(10) == 0
    assert bpf_programs() == before
    e.stop()


def test_ring_buffer_overflow_is_counted_and_survived(host):
    """A 64 KiB ring buffer drained once a second cannot hold six parallel starts:
    the kernel's reserve failures must show up, and the exporter keeps going."""
    e = Exporter(
        free_port(),
        "ring_buffer:\n  size_bytes: 65536\n  wakeup_bytes: 65535\n  drain_interval: 1s\n",
    ).start()
    try:
        before = e.metrics()
        burst = [
            subprocess.Popen([DOCKER, "run", "--rm", "--network", "none", IMAGE, "true"], stdout=subprocess.DEVNULL)
            for _ in range(6)
        ]
        assert [p.wait(60) for p in burst] == [0] * 6
        time.sleep(2.5)  # the kernel counters are polled every second
        after = e.metrics()
        lost = metric(after, "container_startup_exporter_events_dropped_total", reason="ringbuf_full") - metric(
            before, "container_startup_exporter_events_dropped_total", reason="ringbuf_full"
        )
        assert lost > 0
        assert e.ready()
        assert "ring buffer full" in e.log.read_text()
    finally:
        e.stop()


def test_unfinished_start_is_reported_as_timeout(host):
    """With a 100 ms TTL a docker run (~200 ms here) cannot finish in time."""
    e = Exporter(free_port(), "aggregator:\n  record_timeout: 100ms\n").start()
    try:
        before = e.metrics()
        docker_run("--network", "none", IMAGE, "true")
        wait_for(
            lambda: metric(e.metrics(), STARTS, outcome="timeout") - metric(before, STARTS, outcome="timeout") == 1,
            10,
            "one timeout",
        )
        time.sleep(0.5)
        after = e.metrics()
        assert metric(after, STARTS, outcome="success") == metric(before, STARTS, outcome="success")
        rec = e.startups()[-1]
        assert rec["outcome"] == "timeout" and rec["failure_reason"] == "the start did not complete in time"
    finally:
        e.stop()


def test_host_network_has_no_veth_and_args_are_opt_in(host):
    """--network host: no veth_create (no observation, not zero). With
    capture.entrypoint_args the record, and only then, holds the arguments."""
    e = Exporter(free_port(), "capture:\n  entrypoint_args: true\n").start()
    try:
        cid = sh(DOCKER, "run", "-d", "--network", "host", IMAGE, "echo", "secret-value").stdout.strip()
        recs = wait_for(lambda: e.startups(cid), 10, f"the record of {cid}")
        sh(DOCKER, "rm", "-f", cid)
        r = recs[0]
        assert r["outcome"] == "success"
        assert [p["phase"] for p in r["phases"]] == PHASES["none"]
        assert r["namespaces"]["created"] == ["mnt", "uts", "ipc", "pid"], "the host's network namespace is kept"
        assert r["entrypoint"]["args"] == ["echo", "secret-value"]
    finally:
        e.stop()
