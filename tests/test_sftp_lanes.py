"""The artifacts' own SFTP sessions (agent/sinks/lanes.py), against the real sshd of
tests/sftp_server.py: each copy thread writes its files through a session of its own,
never the journal's; a lane that breaks loses the link; one that never opens leaves
the files on the first session."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from sftp_server import SftpServer, available

from agent.sinks.lanes import LANES, Lanes

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}

# Run in the client's namespace: a sink on the server, its lanes up, then two threads
# each creating and writing three files; prints which session each file went through.
TWO_THREADS = """
import json, sys, threading, time
from pathlib import Path
from agent.sinks import open_destination
from agent.sinks.target import parse_target
url, pin, key, mode = sys.argv[1:5]
dest = open_destination(parse_target(url), pin, Path(key))
sink = dest.open_sink("lanes")
deadline = time.monotonic() + 20
while len(sink.lanes.opened()) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
primary = id(sink._sftp)
used = {}
def work(name):
    for i in range(3):
        f = sink.create(f"artifacts/{name}/f{i}")
        data = f"{name} {i}\\n".encode() * 1000
        f.write(data)
        f.finish(len(data))
        used.setdefault(name, []).append(id(f._handle._client))
        f.close()
threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
[t.start() for t in threads]
[t.join() for t in threads]
sink.sync()
out = {"primary": primary, "used": used, "lanes": len(sink.lanes.opened())}
if mode == "break":
    sink.lanes.opened()[0][0].abort()  # one lane's ssh killed
    time.sleep(0.5)
    try:
        sink.check()
        out["lost"] = None
    except Exception as e:
        out["lost"] = type(e).__name__
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


def _two_threads(server: SftpServer, mode: str) -> dict:
    argv = server.in_cli(
        sys.executable, "-B", "-c", TWO_THREADS, server.url(), server.fingerprint,
        server.dropbox_key, mode,
    )  # fmt: skip
    done = subprocess.run(argv, capture_output=True, cwd=ROOT, env=ENV, timeout=90)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().splitlines()[-1])


def test_each_copy_thread_writes_through_a_session_of_its_own(server: SftpServer) -> None:
    out = _two_threads(server, "keep")
    assert out["lanes"] == LANES == 2
    a, b = set(out["used"]["a"]), set(out["used"]["b"])
    assert len(a) == 1 and len(b) == 1  # a thread keeps its lane
    assert a != b  # and the two threads have different ones
    assert out["primary"] not in a | b  # the journal's session carries no file's bytes
    stored = server.evidence / "lanes" / "artifacts"
    for name in ("a", "b"):
        for i in range(3):
            assert (stored / name / f"f{i}").read_bytes() == f"{name} {i}\n".encode() * 1000
    logins = server.log.read_text().count("Accepted publickey for nobody")
    assert logins == 1 + LANES  # the first session and both lanes, each a login of its own


def test_a_lane_that_breaks_loses_the_link(server: SftpServer) -> None:
    out = _two_threads(server, "break")
    assert out["lost"] == "SinkLostError"


def test_files_use_the_first_session_until_a_lane_is_up() -> None:
    failed: concurrent.futures.Future[tuple[object, object]] = concurrent.futures.Future()
    failed.set_exception(ConnectionError("refused"))
    opening: concurrent.futures.Future[tuple[object, object]] = concurrent.futures.Future()
    lanes = Lanes([failed, opening])
    assert lanes.for_this_thread() is None  # none up: the first session
    assert lanes.failed == ["refused"]
    lane = object()
    opening.set_result((object(), lane))
    assert lanes.for_this_thread() is lane
    assert lanes.for_this_thread() is lane  # kept, now that every lane is settled
