"""After a lost link to the SFTP evidence server, against the real sshd of
tests/sftp_server.py: ssh is killed at once by the thread that saw the loss, the files
still open are among those fsynced again before a continuation is sealed, and no
continuation is sealed at all after an fsync that failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT
from sftp_server import SftpServer, available

from agent.sinks._loop import SinkLostError
from agent.sinks.reseal import reseal

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}

# Run in the client's namespace: a sink on the server, a file closed and one left open,
# then the link declared lost while the event loop's thread is stuck (as when it is the
# one blocked writing into a full pipe).
LOSE = """
import json, sys, time
from pathlib import Path
from agent.sinks import open_destination
from agent.sinks.target import parse_target
url, pin, key = sys.argv[1:4]
dest = open_destination(parse_target(url), pin, Path(key))
sink = dest.open_sink("loss")
done = sink.create("artifacts/done")
done.write(b"done\\n")
done.close()
sink.sync()
held = sink.create("artifacts/held")  # an image part, journaled as it is written
held.write(b"x" * 100_000)
out = {"unconfirmed": sink.unconfirmed()}
ssh = sink._conn.proc
sink.loop.loop.call_soon_threadsafe(time.sleep, 3)  # the loop's thread stuck
time.sleep(0.1)
sink._lose(ConnectionError("cut by the test"))
time.sleep(0.5)
out["ssh_alive"] = ssh.poll() is None
print(json.dumps(out))
dest.close()
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SftpServer]:
    if available() is not None:
        pytest.skip(available() or "")
    s = SftpServer(tmp_path / "srv")
    try:
        yield s
    finally:
        s.close()


def test_a_loss_kills_ssh_at_once_and_open_files_count_as_unconfirmed(
    server: SftpServer,
) -> None:
    argv = server.in_cli(
        sys.executable, "-B", "-c", LOSE, server.url(), server.fingerprint, server.dropbox_key
    )
    done = subprocess.run(argv, capture_output=True, cwd=ROOT, env=ENV, timeout=90)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = json.loads(done.stdout.decode().splitlines()[-1])
    # The closed file's fsync was confirmed by the seal's flush; the open one was never
    # fsynced, and a journal record may already name its bytes.
    assert out["unconfirmed"] == ["artifacts/held"]
    # Killed from the thread that saw the loss, not when the stuck loop gets to it.
    assert out["ssh_alive"] is False


def test_no_continuation_is_sealed_after_a_failed_fsync() -> None:
    """An fsync that failed before the loss (collected when an older close was waited
    for, before any seal saw it) must keep every later seal from vouching for that file,
    the continuation's too: the server is not even asked again."""

    def reopen(within: float) -> None:
        raise AssertionError("reconnected although nothing may be sealed")

    lost = SinkLostError("sftp://evidence@server/evidence/x", "the connection broke")
    failed = OSError(5, "fsync or close on the server failed: I/O error", "artifacts/f")
    sink = SimpleNamespace(lost=lost, closing=SimpleNamespace(failed=failed))
    ended = reseal(sink, reopen, signer=None, window=30)  # type: ignore[arg-type]
    assert "an fsync or close had failed before" in str(ended)
    assert "nothing more was sealed" in str(ended)
