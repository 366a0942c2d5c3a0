"""The kernel programs on paths Docker 20.10 does not take, exercised for real:
a process becomes followed by exec'ing under a runtime's name (a symlink named
`containerd`), then uses the new mount API and iproute2's sendmsg netlink.
The `capture` subcommand shows what reached userspace."""

import json
import os
import subprocess
import sys
import time

from conftest import BIN, sh

NEW_MOUNT_API = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount = 429, 430, 431, 432
FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 1, 6
MOVE_MOUNT_F_EMPTY_PATH = 4
d = sys.argv[1]
def check(r, what):
    if r < 0:
        raise OSError(ctypes.get_errno(), what)
    return r
fs = check(libc.syscall(SYS_fsopen, b"overlay", 0), "fsopen")
for k, v in [(b"lowerdir", d + "/lower"), (b"upperdir", d + "/upper"), (b"workdir", d + "/work")]:
    check(libc.syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, k, v.encode(), 0), "fsconfig")
check(libc.syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, None, None, 0), "fsconfig create")
mnt = check(libc.syscall(SYS_fsmount, fs, 0, 0), "fsmount")
check(libc.syscall(SYS_move_mount, mnt, b"", -100, (d + "/merged").encode(), MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
os.close(mnt)
os.close(fs)
check(libc.umount2((d + "/merged").encode(), 0), "umount")
"""


def capture(tmp_path, action):
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen([str(BIN), "capture", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while proc.stderr.readline().find("capturing events") < 0:
            assert proc.poll() is None and time.monotonic() < deadline, "capture did not start"
        action()
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(10)
    return [json.loads(line) for line in out.read_text().splitlines()]


def as_runtime(tmp_path):
    """A python3 that the kernel sees as a process named `containerd`."""
    link = tmp_path / "containerd"
    link.symlink_to(sys.executable)
    return str(link)


def test_new_mount_api_overlay_is_seen(host, tmp_path):
    d = tmp_path / "ovl"
    for sub in ["lower", "upper", "work", "merged"]:
        (d / sub).mkdir(parents=True)
    runtime = as_runtime(tmp_path)
    events = capture(tmp_path, lambda: sh(runtime, "-c", NEW_MOUNT_API, str(d)))
    mounts = [e for e in events if e["type"] == "mount" and e["new_api"]]
    assert len(mounts) == 1, mounts
    m = mounts[0]
    assert (m["fstype"], m["target"], m["ret"], m["comm"]) == ("overlay", str(d / "merged"), 0, "containerd")
    assert 0 < m["start_ts"] < m["ts"], "spans fsopen's enter to move_mount's return"


def test_iproute2_veth_over_sendmsg_is_seen(host, tmp_path):
    ns = f"cse-test-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        runtime = as_runtime(tmp_path)
        script = f"import os; os.execvp('ip', ['ip', '-n', '{ns}', 'link', 'add', 'cseA', 'type', 'veth', 'peer', 'name', 'cseB'])"
        events = capture(tmp_path, lambda: sh(runtime, "-c", script))
    finally:
        sh("ip", "netns", "del", ns)
    veths = [e for e in events if e["type"] == "netlink" and e["op"] == "veth_create"]
    assert [(v["comm"], v["ifname"], v["peer"], v["msg_type"]) for v in veths] == [("ip", "cseA", "cseB", 16)]
    assert veths[0]["ret"] > 0 and 0 < veths[0]["start_ts"] < veths[0]["ts"]


def test_untracked_processes_send_nothing(host, tmp_path):
    """The same two actions by a process with an ordinary name reach nothing."""
    d = tmp_path / "ovl"
    for sub in ["lower", "upper", "work", "merged"]:
        (d / sub).mkdir(parents=True)
    ns = f"cse-test-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        def act():
            sh(sys.executable, "-c", NEW_MOUNT_API, str(d))
            sh("ip", "-n", ns, "link", "add", "cseA", "type", "veth", "peer", "name", "cseB")

        events = capture(tmp_path, act)
    finally:
        sh("ip", "netns", "del", ns)
    mine = [e for e in events if e["comm"] in ("python3", "ip", os.path.basename(sys.executable)[:15])]
    assert mine == []
