"""What the benchmark scripts share: the binary, the image, and starting and
stopping an exporter on a loopback port."""

import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release" / "container-startup-exporter"
DOCKER = "/usr/bin/docker"
IMAGE = "cse-test/busybox:latest"


def start_exporter(port, extra_config=""):
    """Starts the release binary and returns its process once /readyz is 200."""
    cfg = Path(tempfile.mkdtemp()) / "c.yaml"
    cfg.write_text(f"http:\n  listen_address: 127.0.0.1:{port}\n{extra_config}")
    p = subprocess.Popen([str(BIN), "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("exporter did not become ready")


def stop_exporter(p):
    p.terminate()
    p.wait(10)


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()
