"""Shared fixtures of the end-to-end tests: the real Docker engine, the
exporter binary as users run it, and a real Prometheus server.

Privileged tests need root, tracefs and dockerd. Outside CI they are skipped
when those are missing; under CI=true they fail instead."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "container-startup-exporter"
DOCKER = "/usr/bin/docker"
IMAGE = "cse-test/busybox:latest"
IN_CI = os.environ.get("CI") == "true"


def need(condition, why):
    if condition:
        return
    if IN_CI:
        pytest.fail(f"privileged test cannot run under CI=true: {why}")
    pytest.skip(why)


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, urllib.error.URLError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable metrics line: {line!r}"
        name, labels, value = m.groups()
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        out[(name, pairs)] = float(value)
    return out


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class Exporter:
    def __init__(self, port, config_extra=""):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dir = Path(tempfile.mkdtemp(prefix="cse-e2e-"))
        self.config = self.dir / "config.yaml"
        self.config.write_text(f"http:\n  listen_address: 127.0.0.1:{port}\n{config_extra}")
        self.log = self.dir / "exporter.log"
        self.proc = None

    def start(self, wrapper=()):
        self.proc = subprocess.Popen(
            [*wrapper, str(BIN), "--config", str(self.config), "run"],
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.ready, 30, f"exporter /readyz on {self.url} (log: {self.log})")
        return self

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        return http_get(self.url + "/readyz")[0] == 200

    def metrics(self):
        return parse_metrics(http_get(self.url + "/metrics")[1])

    def metrics_text(self):
        return http_get(self.url + "/metrics")[1]

    def startups(self, container_id=None):
        q = f"?container_id={container_id}" if container_id else ""
        return json.loads(http_get(self.url + "/api/v1/startups" + q)[1])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def host():
    """Root, tracefs, dockerd and the test image, all real."""
    need(os.geteuid() == 0, "needs root")
    need(BIN.exists(), f"{BIN} not built (cargo build --release)")
    r = subprocess.run(
        ["bash", "-c", "source scripts/env.sh && ensure_tracefs && ensure_dockerd && ensure_test_image"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    need(r.returncode == 0, f"cannot bring up tracefs/dockerd/image: {r.stderr[-1000:]}")
    return True


@pytest.fixture(scope="module")
def exporter(host):
    e = Exporter(free_port()).start()
    yield e
    e.stop()


def docker_run(*args, check=True):
    return subprocess.run([DOCKER, "run", "--rm", *args], capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="module")
def prometheus(exporter):
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="cse-prom-"))
    (d / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: cse\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter.port}']\n"
    )
    proc = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=open(d / "prometheus.log", "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 30, "prometheus ready")
    # rate() needs samples from before the starts the tests make
    wait_for(lambda: prom_query(url, 'count_over_time(up{job="cse"}[1m]) >= 2'), 30, "two scrapes of the exporter")
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(d, ignore_errors=True)


def prom_query(url, expr):
    q = urllib.parse.urlencode({"query": expr})
    status, body = http_get(f"{url}/api/v1/query?{q}")
    data = json.loads(body)
    assert data["status"] == "success", data
    return data["data"]["result"]
