"""Names a host's users choose that the kernel prints unescaped into a /proc table: a
mount point (in a private mount namespace made by the test) and a process's own name
(``prctl(PR_SET_NAME)``) holding VT, the ASCII separators, NEL or U+2028, at which
``str.splitlines``/``str.split`` also cut. Each must stay one field of its own row, and
forge no other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, requires_root

from collectors import freshproc

_MOUNTINFO = """
import json, os, subprocess, sys
from collectors import _linux
from collectors.timeline import plan
point = os.fsencode(sys.argv[1])
os.makedirs(point)
subprocess.run([b"mount", b"-t", b"proc", b"forged", point], check=True)
rows = _linux.mountinfo()
print(json.dumps({"rows": rows, "skip_devs": sorted(plan(rows).skip_devs)}))
"""


@requires_root
def test_a_mount_point_that_would_forge_a_row(tmp_path: Path) -> None:
    """A proc mounted at ``a<VT>999<US>1<US>MAJ:MIN<US>/<US>/<US>rw``: cut at VT and
    split at US, the tail reads as a proc mount of the root file system's device, which
    the timeline would then not walk."""
    root = os.stat("/").st_dev
    dev = f"{os.major(root)}:{os.minor(root)}"
    point = f"{tmp_path}/a\x0b999\x1f1\x1f{dev}\x1f/\x1f/\x1frw"
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _MOUNTINFO, point],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    seen = json.loads(done.stdout)
    [mine] = [r for r in seen["rows"] if r["source"] == "forged"]
    assert mine["mountpoint"] == point and mine["fstype"] == "proc"
    assert not [r for r in seen["rows"] if r["mount_id"] == 999 or r["dev"] == dev and
                r["fstype"] == "proc"]  # fmt: skip
    assert root not in seen["skip_devs"]


_NAMED = """
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
print("named", flush=True)
time.sleep(60)
"""


@requires_root
@pytest.mark.parametrize("cut", ["\u2028", "\x85", "\x1e"], ids=["U+2028", "NEL", "RS"])
def test_a_process_name_that_would_forge_a_status_field(cut: str) -> None:
    """A process named ``sshd<cut>Evil: 1`` is read through the fresh proc with its whole
    name, and no field ``Evil``."""
    name = f"sshd{cut}Evil: 1"
    assert len(name.encode()) <= 15  # what a task's comm holds
    child = subprocess.Popen(
        [sys.executable, "-c", _NAMED, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "named\n"
        [proc] = freshproc.read([child.pid])["processes"]
    finally:
        child.kill()
        child.wait()
    assert proc["status"]["Name"] == name
    assert "Evil" not in proc["status"]
    assert proc["status"]["Pid"] == str(child.pid)
