"""A busy evidence server: sshd past its ``MaxStartups`` closes a new connection before
its banner, as it does when a fleet's hosts all connect at once. The first connection
is tried again (nothing is collected yet), for up to ``--sink-timeout``; a server that
keeps turning it away is refused with what to do. Against the real sshd of
tests/sftp_server.py with ``MaxStartups 1`` and one connection that never logs in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, verify
from sftp_server import PORT, SftpServer, available
from test_sftp_sink import ENV, _argv, _evidence_dirs, _run, _tree

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[SftpServer]:
    s = SftpServer(tmp_path / "srv", config="MaxStartups 1\n")
    try:
        yield s
    finally:
        s.close()


def _hold(server: SftpServer, seconds: float) -> subprocess.Popen[bytes]:
    """One connection that never says a word: sshd's only unauthenticated slot, taken."""
    code = (
        "import socket,sys,time;"
        f"c=socket.create_connection(('{server.addr}',{PORT}));"
        f"print(flush=True);time.sleep({seconds})"
    )
    holder = subprocess.Popen(server.in_cli(sys.executable, "-c", code), stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"\n"
    return holder


def _turned_away(server: SftpServer) -> int:
    return server.log.read_text().count("past MaxStartups")


@pytest.mark.parametrize("transport", ["openssh", "asyncssh"])
def test_a_server_turning_the_connection_away_is_tried_again(
    busy: SftpServer, tmp_path: Path, transport: str
) -> None:
    holder = _hold(busy, 1.5)
    try:
        argv = busy.in_cli(
            sys.executable, "-B", "-c", PRESERVE_CODE, "-o", busy.url(),
            "--sink-host-key", busy.fingerprint, "--sink-key", busy.plain_key,
            "--sink-transport", transport, "--only", "files", "--path", _tree(tmp_path),
        )  # fmt: skip
        done = _run(argv)
    finally:
        holder.kill()
        holder.wait()
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert _turned_away(busy) >= 1
    assert "WARNING: the evidence server turned the connection away before logging in" in stderr
    assert "trying again in" in stderr
    (evidence,) = _evidence_dirs(busy)
    assert verify(evidence).returncode == 0
    start = json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])
    assert start["sink"]["connect_attempts"] >= 2


def test_a_server_that_keeps_turning_it_away_is_refused_within_the_sink_timeout(
    busy: SftpServer, tmp_path: Path
) -> None:
    holder = _hold(busy, 60)
    try:
        argv = _argv(busy, busy.plain_key, "--sink-timeout", "3", "--only", "files",
                     "--path", _tree(tmp_path))  # fmt: skip
        began = time.monotonic()
        done = _run(argv)
        took = time.monotonic() - began
    finally:
        holder.kill()
        holder.wait()
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "the server turned the connection away before logging in" in stderr
    assert "MaxStartups" in stderr  # what to do about it
    assert _turned_away(busy) >= 2 and took < 15, (took, stderr)
    assert _evidence_dirs(busy) == []  # refused before anything was collected


def test_a_closed_port_is_not_tried_again(busy: SftpServer, tmp_path: Path) -> None:
    """Nothing listening is an answer, not a busy server: refused at once."""
    argv = busy.in_cli(
        sys.executable, "-B", "-c", PRESERVE_CODE, "--json",
        "-o", f"sftp://nobody@{busy.addr}:{PORT + 1}/evidence",
        "--sink-host-key", busy.fingerprint, "--sink-key", busy.plain_key,
        "--only", "files", "--path", _tree(tmp_path),
    )  # fmt: skip
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, env=ENV, timeout=60)
    assert done.returncode == 2 and b"cannot connect" in done.stderr, done.stderr
    assert time.monotonic() - began < 5
