# ruff: noqa: F811  (the server fixture is shared with test_sftp_sink)
"""The SFTP sink's fsyncs, pipelined (agent/sinks/sftpfile.py ``Closing``): closing an
artifact sends its ``fsync@openssh.com`` and CLOSE and does not wait for them, the
flush before a seal does; and a server that refuses the fsync still fails the run, with
no seal after it. Against OpenSSH's own ``sftp-server`` (stopped with SIGSTOP to hold
its replies back) and the real sshd of tests/sftp_server.py (``internal-sftp -P fsync``
denies the fsync for real)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from sftp_server import SftpServer
from test_sftp_sink import ENV, _argv, _evidence_dirs, _tree, server  # noqa: F401

from agent.sinks._loop import _Loop
from agent.sinks.pipe import PipeWriter
from agent.sinks.sftp import SftpSink
from agent.sinks.target import SftpTarget
from agent.sinks.wire import WireClient

SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")


class _Conn:
    """The sftp-server process, as the sink sees its connection."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def is_closed(self) -> bool:
        return self.proc.poll() is not None

    def abort(self) -> None:
        self.proc.kill()

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


async def _session(proc: subprocess.Popen[bytes]) -> tuple[_Conn, WireClient, None]:
    """An SFTP session with ``proc`` (an sftp-server) over its pipes, as an opener gives."""
    assert proc.stdin is not None and proc.stdout is not None
    reader = asyncio.StreamReader(limit=1 << 20)
    protocol = asyncio.StreamReaderProtocol(reader)
    await asyncio.get_running_loop().connect_read_pipe(lambda: protocol, proc.stdout)
    client = WireClient(reader, PipeWriter(os.dup(proc.stdin.fileno())))
    proc.stdin.close()  # the client's copy is the only one: its exit is the server's EOF
    await client.start()
    return _Conn(proc), client, None


def _local_sink(root: Path) -> tuple[SftpSink, subprocess.Popen[bytes]]:
    """A sink speaking SFTP to a real ``sftp-server`` over its pipes (no ssh)."""
    proc = subprocess.Popen(
        [SFTP_SERVER, "-d", root], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    loop = _Loop()
    conn, client, _ = loop.run(_session(proc))
    target = SftpTarget("nobody", "localhost", 22, str(root))
    sink = SftpSink(loop, conn, client, target, fsync_ok=True, renames=True)
    sink.timeout = 20
    return sink, proc


@pytest.mark.skipif(not SFTP_SERVER.exists(), reason="needs OpenSSH's sftp-server")
def test_closing_an_artifact_does_not_wait_for_its_fsync(tmp_path: Path) -> None:
    sink, proc = _local_sink(tmp_path)
    try:
        file = sink.create("a")
        file.write(b"x" * 300_000)
        file.finish(300_000)
        file._drain()  # the writes are acknowledged: what remains is the fsync and CLOSE
        proc.send_signal(signal.SIGSTOP)  # the server answers nothing more
        closed = threading.Event()
        closer = threading.Thread(target=lambda: (file.close(), closed.set()), daemon=True)
        closer.start()
        try:
            assert closed.wait(3), "close waited for the server's fsync"
            flushed = threading.Event()
            flusher = threading.Thread(target=lambda: (sink.sync(), flushed.set()), daemon=True)
            flusher.start()
            assert not flushed.wait(0.5), "the flush before a seal did not wait for the fsync"
        finally:
            proc.send_signal(signal.SIGCONT)
        assert flushed.wait(10)
        assert (tmp_path / "a").read_bytes() == b"x" * 300_000
        assert sink.closing.pending() == []
    finally:
        proc.kill()
        sink.loop.stop()


# An ssh that renames the first fsync@openssh.com request on its way (same length: the
# one for signer.pub, the first file closed), so the real server answers it
# "unsupported": a failed fsync, which a healthy disk never gives.
FAILING_SSH = r"""#!/usr/bin/python3
import os, subprocess, sys, threading
real = subprocess.Popen(["/usr/bin/ssh", *sys.argv[1:]], stdin=subprocess.PIPE)
def relay():
    carry, first = b"", 1
    while data := os.read(0, 1 << 16):
        data = (carry + data).replace(b"fsync@openssh.com", b"fsync@openssh.cxm", first)
        first = max(first - data.count(b"fsync@openssh.cxm"), 0)
        cut = next((n for n in range(16, 0, -1) if b"fsync@openssh.com".startswith(data[-n:])), 0)
        carry, data = data[len(data) - cut :], data[: len(data) - cut]
        real.stdin.write(data); real.stdin.flush()
    real.stdin.write(carry); real.stdin.close()
threading.Thread(target=relay, daemon=True).start()
sys.exit(real.wait())
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/ssh").exists(), reason="needs root (sshd) and ssh"
)
def test_a_failed_fsync_fails_the_run_and_no_seal_covers_it(
    server: SftpServer, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAILING_SSH)
    (bin_dir / "ssh").chmod(0o755)
    argv = _argv(server, server.dropbox_key, "--only", "files", "--path", _tree(tmp_path, 3))
    env = {**ENV, "PATH": f"{bin_dir}:{ENV['PATH']}"}
    done = subprocess.run(argv, capture_output=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode != 0, done.stdout.decode()
    assert b"fsync" in done.stderr, done.stderr.decode()
    (evidence,) = _evidence_dirs(server)
    records: list[dict[str, Any]] = [
        json.loads(line) for line in (evidence / "custody.jsonl").read_bytes().splitlines()
    ]
    artifacts = [i for i, r in enumerate(records) if r["type"] == "artifact"]
    seals = [i for i, r in enumerate(records) if r["type"] == "seal"]
    assert artifacts, records
    assert not [s for s in seals if s > artifacts[0]], "a seal covers a file never fsynced"
