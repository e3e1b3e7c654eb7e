# ruff: noqa: F811  (the server fixture is shared with test_sftp_sink)
"""The fsyncs in a second session (agent/sinks/sidefsync.py): an artifact's fsync
does not hold back the session streaming the next one, a seal still waits for it, and
a second session that cannot connect, cannot read, or breaks is handled. Against two
real OpenSSH ``sftp-server`` processes on one directory (SIGSTOP holds one back), and
the real sshd of tests/sftp_server.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ROOT, verify
from sftp_server import SftpServer
from test_sftp_fsync import SFTP_SERVER, _Conn, _session
from test_sftp_sink import ENV, _argv, _evidence_dirs, _tree, server  # noqa: F401

from agent.sinks._loop import _Loop
from agent.sinks.sftp import SftpFile, SftpSink
from agent.sinks.sftpcodec import FX_PERMISSION_DENIED, SftpLinkLost, status_error
from agent.sinks.sidefsync import SideFsync
from agent.sinks.sshpeer import connected_peer, socket_fds
from agent.sinks.sshproc import _SYS_PIDFD_GETFD, SshConnection
from agent.sinks.target import SftpTarget
from agent.sinks.wire import WireClient

pytestmark = pytest.mark.skipif(not SFTP_SERVER.exists(), reason="needs OpenSSH's sftp-server")


def _server(root: Path, *denied: str) -> subprocess.Popen[bytes]:
    argv = [str(SFTP_SERVER), "-d", str(root), *(["-P", ",".join(denied)] if denied else [])]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


class _Pair:
    """A sink on one sftp-server, its fsync session on another (or on nothing).
    ``first_denies_fsync``: the first server refuses fsync, so that a file whose fsync
    fell back to the first session fails the flush, visibly."""

    def __init__(
        self, root: Path, side: subprocess.Popen[bytes] | None, first_denies_fsync: bool = False
    ) -> None:
        self.main = _server(root, *(["fsync"] if first_denies_fsync else []))
        self.side = side
        self.loop = _Loop()
        conn, client, _ = self.loop.run(_session(self.main))
        target = SftpTarget("nobody", "localhost", 22, str(root))
        self.sink = SftpSink(self.loop, conn, client, target, fsync_ok=True, renames=True)
        self.sink.timeout = 20
        if side is not None:
            attempt = self.loop.submit(_session(side))
        else:
            attempt = concurrent.futures.Future()
            attempt.set_exception(ConnectionRefusedError("no second session"))
        self.sink.side = SideFsync(attempt, 10.0)

    @property
    def side_fsync(self) -> SideFsync:
        assert self.sink.side is not None
        return self.sink.side

    def close(self) -> None:
        for proc in (self.main, self.side):
            if proc is not None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        self.loop.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[_Pair]:
    made = _Pair(tmp_path, _server(tmp_path), first_denies_fsync=True)
    yield made
    made.close()


def _write(sink: SftpSink, rel: str, data: bytes) -> SftpFile:
    """``rel`` written and its writes acknowledged, not closed yet."""
    file = sink.create(rel)
    file.write(data)
    file.finish(len(data))
    file._drain()
    return file


def _in_background(work: Any) -> threading.Event:
    done = threading.Event()
    threading.Thread(target=lambda: (work(), done.set()), daemon=True).start()
    return done


def _wait_side_open(file: SftpFile) -> None:
    """Until the file's handle in the second session is open (a round trip there)."""
    for _ in range(500):
        if file._side is not None and file._side.done():
            return
        time.sleep(0.01)
    raise AssertionError("the second session never opened the file")


def _fsynced_by_the_first(sink: SftpSink, file: SftpFile) -> None:
    """Closing ``file`` asked the first session (which refuses) for its fsync."""
    file.close()
    with pytest.raises(OSError, match="fsync or close on the server failed"):
        sink.sync()


def test_the_fsync_is_the_second_sessions_and_a_seal_waits_for_it(
    pair: _Pair, tmp_path: Path
) -> None:
    assert pair.side is not None
    first = _write(pair.sink, "a", b"a" * 300_000)
    _wait_side_open(first)
    pair.side.send_signal(signal.SIGSTOP)  # the fsync session answers nothing more
    try:
        first.close()
        # The streaming session goes on: another file is created, written and
        # acknowledged while a's fsync is held back in the other session.
        second = _write(pair.sink, "b", b"b" * 300_000)
        flushed = _in_background(pair.sink.sync)
        assert not flushed.wait(0.5), "the flush before a seal did not wait for a's fsync"
    finally:
        pair.side.send_signal(signal.SIGCONT)
    assert flushed.wait(10)  # and not by the first session, which refuses fsync
    _wait_side_open(second)
    second.close()
    pair.sink.sync()
    assert [(tmp_path / n).read_bytes()[:1] for n in "ab"] == [b"a", b"b"]
    assert pair.sink.closing.pending() == [] and pair.sink.closing.failed is None
    assert pair.side_fsync.usable


def test_a_file_closed_before_the_second_session_opened_it_is_fsynced_by_the_first(
    pair: _Pair,
) -> None:
    assert pair.side is not None
    pair.side.send_signal(signal.SIGSTOP)  # it opens nothing
    try:
        _fsynced_by_the_first(pair.sink, _write(pair.sink, "a", b"a" * 100_000))
    finally:
        pair.side.send_signal(signal.SIGCONT)


@pytest.mark.parametrize(
    "side",
    [
        pytest.param(lambda root: None, id="cannot-connect"),
        pytest.param(lambda root: _server(root, "open"), id="may-not-read"),
        pytest.param(lambda root: _server(root, "fsync"), id="offers-no-fsync"),
    ],
)
def test_a_second_session_that_cannot_fsync_leaves_it_to_the_first(
    tmp_path: Path, side: Any
) -> None:
    made = _Pair(tmp_path, side(tmp_path), first_denies_fsync=True)
    try:
        file = _write(made.sink, "a", b"a" * 100_000)
        _wait_side_open(file)
        _fsynced_by_the_first(made.sink, file)
        assert not made.side_fsync.usable
    finally:
        made.close()


class _Refusing:
    """A handle whose fsync the server refuses, as one through a read-only handle may
    be (Windows' ``FlushFileBuffers`` needs write access)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def fsync_and_close(self, fsync: bool) -> None:
        await self._handle.close()
        if fsync:
            raise status_error(FX_PERMISSION_DENIED, "read-only handle")


class _Hanging:
    """An asyncssh-like handle (no ``fsync_and_close``) of a server that stopped
    answering: its fsync, and the close after it, return only once the connection is
    dropped, failed as asyncssh fails a dropped connection's requests."""

    def __init__(self, handle: Any, server: subprocess.Popen[bytes]) -> None:
        self._handle, self._server = handle, server

    async def _until_dropped(self) -> None:
        while self._server.poll() is None:
            await asyncio.sleep(0.05)
        raise SftpLinkLost("the connection was dropped")

    async def fsync(self) -> None:
        await self._until_dropped()

    async def close(self) -> None:
        await self._until_dropped()


class _Wrapping:
    def __init__(self, client: WireClient, wrap: Any) -> None:
        self._client, self._wrap = client, wrap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def open(self, path: str, flags: Any) -> Any:
        return self._wrap(await self._client.open(path, flags))


@pytest.mark.parametrize("how", ["refused", "hung"])
def test_an_fsync_the_second_session_does_not_do_is_the_firsts(tmp_path: Path, how: str) -> None:
    """Refused: the first session's fsync then says whether the disk failed. Hung: given
    up after its timeout (half of --sink-timeout), not waited for until the link counts
    as lost."""
    side = _server(tmp_path)
    wrap = _Refusing if how == "refused" else (lambda handle: _Hanging(handle, side))

    async def wrapped() -> tuple[_Conn, Any, None]:
        conn, client, _ = await _session(side)
        return conn, _Wrapping(client, wrap), None

    made = _Pair(tmp_path, None, first_denies_fsync=True)
    try:
        made.sink.side = SideFsync(made.loop.submit(wrapped()), 1.0)
        file = _write(made.sink, "a", b"a" * 100_000)
        _wait_side_open(file)
        flushed = _in_background(lambda: _fsynced_by_the_first(made.sink, file))
        assert flushed.wait(8), "the flush waited on the second session"
        assert not made.side_fsync.usable and made.sink.lost is None
    finally:
        side.kill()
        made.close()


def test_a_second_session_that_breaks_leaves_the_fsync_to_the_first(pair: _Pair) -> None:
    assert pair.side is not None
    file = _write(pair.sink, "a", b"a" * 100_000)
    _wait_side_open(file)
    pair.side.kill()  # with a's handle open there
    pair.side.wait()
    _fsynced_by_the_first(pair.sink, file)
    assert not pair.side_fsync.usable and pair.sink.lost is None


def test_closing_the_sink_ends_both_sessions_in_order(tmp_path: Path) -> None:
    made = _Pair(tmp_path, _server(tmp_path))
    try:
        file = _write(made.sink, "a", b"a" * 100_000)
        _wait_side_open(file)
        file.close()
        made.sink.sync()
        made.sink.close()
        for proc in (made.main, made.side):
            assert proc is not None
            assert proc.wait(5) == 0  # EOF on its stdin: it exited by itself, not killed
    finally:
        made.close()


def test_aborting_a_second_session_nothing_used_yet_ends_it(pair: _Pair) -> None:
    assert pair.side is not None
    for _ in range(500):
        if pair.side_fsync._attempt.done():
            break
        time.sleep(0.01)
    pair.side_fsync.abort()  # as a lost first session does
    assert pair.side.wait(5) == -signal.SIGKILL


def test_the_address_ssh_reached_is_read_from_proc() -> None:
    """What ``--isolate`` keeps open and the second session dials (sshpeer)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            assert connected_peer(os.getpid(), port) == "127.0.0.1"
            assert connected_peer(os.getpid(), port + 1 if port < 65535 else 1) is None
            client.close()


def test_no_lingering_takes_the_tcp_socket_out_of_another_process() -> None:
    """``SshConnection.no_lingering`` finds ssh's socket through the same /proc walk as
    ``connected_peer`` (``sshpeer.socket_fds``) and sets SO_LINGER 0 on it, passing a
    Unix socket by."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        code = (
            "import socket,time;u=socket.socketpair();"
            f"s=socket.create_connection(('127.0.0.1',{listener.getsockname()[1]}));"
            "print(s.fileno(),flush=True);time.sleep(30)"
        )
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        try:
            assert child.stdout is not None
            tcp_fd = int(child.stdout.readline())
            assert len(socket_fds(child.pid)) == 3  # the socket pair's two, and the TCP one
            assert SshConnection.no_lingering(SimpleNamespace(proc=child))  # type: ignore[arg-type]
            pidfd = os.pidfd_open(child.pid)
            try:
                fd = ctypes.CDLL(None, use_errno=True).syscall(_SYS_PIDFD_GETFD, pidfd, tcp_fd, 0)
            finally:
                os.close(pidfd)
            assert fd >= 0
            with socket.socket(fileno=fd) as theirs:
                linger = theirs.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
            assert struct.unpack("ii", linger) == (1, 0)
        finally:
            child.kill()
            child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, sshd)")
def test_a_run_fsyncs_in_a_second_session_of_its_own(server: SftpServer, tmp_path: Path) -> None:
    """A run long enough for the second session to connect (160 MiB: half a second
    here, where that session is up within a fifth of one) logs in twice, and the
    server's fsyncs (strace on its sshd) are made by two session processes: most
    artifacts' in the second, the journal's in the first."""
    assert server.proc is not None
    trace = tmp_path / "fsyncs"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=fsync", "-o", trace, "-p", str(server.proc.pid)]
    )
    try:
        time.sleep(0.5)  # attached
        log = server.log.read_bytes()
        tree = _tree(tmp_path, 40, 4 << 20)
        argv = _argv(server, server.dropbox_key, "--only", "files", "--path", tree)
        done = subprocess.run(argv, capture_output=True, cwd=ROOT, env=ENV, timeout=120)
    finally:
        tracer.terminate()
        tracer.wait(10)
    assert done.returncode == 0, done.stderr.decode()
    new = server.log.read_bytes()[len(log) :]
    assert new.count(b"Accepted publickey") == 2, new.decode()
    by_pid = Counter(line.split()[0] for line in trace.read_text().splitlines() if "fsync(" in line)
    assert len(by_pid) == 2 and sum(by_pid.values()) > 40, by_pid
    assert min(by_pid.values()) > 1, by_pid  # the journal's fsyncs stay in the first
    (evidence,) = _evidence_dirs(server)
    start = json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])
    assert start["sink"]["fsync_session"] == "separate", start["sink"]
    checked = verify(evidence, "--fingerprint", json.loads(done.stdout)["fingerprint"])
    assert checked.returncode == 0, checked.stdout.decode()
