# ruff: noqa: F811  (the server fixture is shared with test_sftp_sink)
"""The SFTP sink when the link breaks mid-stream (tests/sftp_server.py namespaces): a
short cut is ridden out (writes wait, bounded in memory); a cut longer than
--sink-timeout, ssh frozen, or the server's sshd killed, stops the run with exit 1 and one line
naming the last journal record the server acknowledged, and that record is on the
server, inside a prefix verify proves up to its last seal. When the server comes back
within --sink-reconnect, what it holds is sealed there (custody.continued.jsonl) and the
line names that seal's chain head, which verify matches."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, verify
from netns_topology import sh
from sftp_server import SftpServer, available
from test_sftp_sink import ENV, _argv, _evidence_dirs, _tree, server  # noqa: F401

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")
ACKED = re.compile(r"acknowledged the journal up to seq (\d+), chain head ([0-9a-f]{64})")
SEALED = re.compile(
    r"sealed in custody.continued.jsonl, up to seq (\d+), chain head ([0-9a-f]{64})"
)


def _streaming(server: SftpServer, tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A run through the drop-box, returned once 8 of its files are on the server."""
    src = _tree(tmp_path, files=120, size=1_000_000)
    argv = _argv(server, server.dropbox_key, "--only", "files", "--path", src, *extra)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
    deadline = time.monotonic() + 60
    while sum(1 for p in server.evidence.rglob("f*") if p.is_file()) < 8:
        assert time.monotonic() < deadline and proc.poll() is None, "the stream did not start"
        time.sleep(0.02)
    return proc


def _link(server: SftpServer, state: str) -> None:
    sh("ip", "-n", server.ns["cli"], "link", "set", "c0", state)


def _connected(server: SftpServer) -> bool:
    """Whether the run still holds a TCP connection to the server."""
    argv = server.in_cli("ss", "-Htn", "state", "established", "( dport = :2222 )")
    return bool(subprocess.run(argv, capture_output=True, check=True).stdout.strip())


def _assert_stopped_with_the_acknowledged_head(
    server: SftpServer, stderr: bytes, resealed: bool = False
) -> None:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines  # one line: no traceback, no asyncio noise
    found = ACKED.search(lines[0])
    assert found and "was lost" in lines[0], lines
    seq, head = int(found.group(1)), found.group(2)
    (evidence,) = _evidence_dirs(server)
    journal = (evidence / "custody.jsonl").read_bytes().splitlines()
    acked = [line for line in journal if json.loads(line)["seq"] == seq]
    assert acked and hashlib.sha256(acked[0]).hexdigest() == head
    if resealed:
        return  # sealed after it: the caller checks that seal
    report = json.loads(verify(evidence, "--json").stdout)
    assert report["sealed_through_seq"] is not None
    assert report["sealed_through_seq"] <= seq
    problems = report["files"]["problems"]
    assert not [p for p in problems if p["status"] in ("changed", "unexpected")], problems


def test_a_short_cut_is_ridden_out(server: SftpServer, tmp_path: Path) -> None:
    proc = _streaming(server, tmp_path)
    _link(server, "down")
    time.sleep(3)
    _link(server, "up")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    (evidence,) = _evidence_dirs(server)
    assert verify(evidence, "--fingerprint", json.loads(out)["fingerprint"]).returncode == 0


def test_a_cut_longer_than_the_timeout_stops_the_run(server: SftpServer, tmp_path: Path) -> None:
    proc = _streaming(server, tmp_path, "--sink-timeout", "4")
    _link(server, "down")
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        _link(server, "up")
    assert proc.returncode == 1, err.decode()
    assert time.monotonic() - started < 30  # bounded: about the timeout, not forever
    _assert_stopped_with_the_acknowledged_head(server, err)


def test_a_stopped_ssh_stops_the_run_after_the_timeout(server: SftpServer, tmp_path: Path) -> None:
    """ssh frozen (SIGSTOP, as an intruder on the host could): the pipe into it fills
    and the writes block; after --sink-timeout that ssh is ended (by whichever sees it
    first: a reply not in, or the pipe's watchdog, which alone covers writes blocked
    with nobody waiting for a reply: tests/test_sftp_pipe.py), and the run stops with
    the acknowledged head instead of hanging."""
    proc = _streaming(server, tmp_path, "--sink-timeout", "2", "--sink-reconnect", "0")
    # The oldest: the streaming session's (a second is the fsync session's, sidefsync).
    (ssh,) = sh("pgrep", "-o", "-P", str(proc.pid), "-x", "ssh").stdout.split()
    os.kill(int(ssh), signal.SIGSTOP)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err.decode()
    assert time.monotonic() - started < 20  # about the timeout, not forever
    _assert_stopped_with_the_acknowledged_head(server, err)


def test_sshd_killed_stops_the_run(server: SftpServer, tmp_path: Path) -> None:
    proc = _streaming(server, tmp_path, "--sink-reconnect", "2")
    for pid in sh("ip", "netns", "pids", server.ns["srv"]).stdout.split():
        os.kill(int(pid), 9)  # the daemon and the session serving this run
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err.decode()
    _assert_stopped_with_the_acknowledged_head(server, err)


def test_the_server_back_after_a_long_cut_gets_the_seal(server: SftpServer, tmp_path: Path) -> None:
    proc = _streaming(server, tmp_path, "--sink-timeout", "3", "--sink-reconnect", "60")
    _link(server, "down")
    try:
        deadline = time.monotonic() + 30
        while _connected(server):  # until the run gives the link up (keep-alives missed)
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
    finally:
        _link(server, "up")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err.decode()
    _assert_stopped_with_the_acknowledged_head(server, err, resealed=True)
    sealed = SEALED.search(err.decode())
    assert sealed, err.decode()
    seq, head = int(sealed.group(1)), sealed.group(2)
    (evidence,) = _evidence_dirs(server)
    continued = evidence / "custody.continued.jsonl"
    assert continued.stat().st_mode & 0o777 == 0o444  # created read-only, as the journal
    first = json.loads(continued.read_bytes().splitlines()[0])
    assert first["journal_bytes"] == (evidence / "custody.jsonl").stat().st_size
    checked = verify(evidence, "--json", "--chain-head", head)
    report = json.loads(checked.stdout)
    assert report["chain_pin"] == "matched", report["problems"]
    assert report["sealed_through_seq"] == seq == report["records"] - 1
    assert report["seals"][-1]["reason"] == "after the link was lost"
    # The run did not finish (no manifest), and verify says only that: no break, no tail.
    assert len(report["problems"]) == 1 and "did not finish" in report["problems"][0]
    assert any("custody.continued.jsonl" in n for n in report["notes"])
    problems = report["files"]["problems"]
    assert not [p for p in problems if p["status"] in ("changed", "unexpected")], problems

    # The continuation is checked like the journal: one byte changed in it fails verify.
    copy = tmp_path / "copy"
    shutil.copytree(evidence, copy)
    (copy / continued.name).chmod(0o644)
    data = (copy / continued.name).read_bytes()
    (copy / continued.name).write_bytes(
        data.replace(b"the connection broke", b"the connection BROKE")
    )
    tampered = json.loads(verify(copy, "--json", "--chain-head", head).stdout)
    assert tampered["chain_pin"] == "mismatch"
    assert any("chain broken" in p for p in tampered["problems"]), tampered["problems"]
