"""``preserve -o sftp://...`` against a real OpenSSH ``sshd`` in network namespaces
(tests/sftp_server.py): evidence streams to the server and verifies there, nothing is
written on the client's disk, the host key is pinned, a killed run leaves a verifiable
prefix, and the drop-box account cannot delete what it sent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, ROOT, verify
from sftp_server import SftpServer, available
from test_hostile import _written_path

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SftpServer]:
    s = SftpServer(tmp_path / "srv")
    try:
        yield s
    finally:
        s.close()


def _argv(server: SftpServer, key: Path, *extra: str | os.PathLike[str]) -> list[str]:
    return server.in_cli(
        sys.executable, "-B", "-c", PRESERVE_CODE, "--json", "-o", server.url(),
        "--sink-host-key", server.fingerprint, "--sink-key", key, *extra,
    )  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, cwd=ROOT, env=ENV, timeout=120)


def _tree(tmp_path: Path, files: int = 5, size: int = 300_000) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(files):
        (src / f"f{i}").write_bytes(os.urandom(size))
    return src


def _evidence_dirs(server: SftpServer) -> list[Path]:
    return sorted(p for p in server.evidence.iterdir() if p.is_dir())


@pytest.mark.parametrize("account", ["plain", "dropbox"])
def test_streams_to_the_server_and_verifies_there(
    server: SftpServer, tmp_path: Path, account: str
) -> None:
    key = server.plain_key if account == "plain" else server.dropbox_key
    done = _run(_argv(server, key, "--only", "files", "--path", _tree(tmp_path)))
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    (evidence,) = _evidence_dirs(server)
    assert summary["evidence_dir"].endswith(f"/evidence/{evidence.name}")
    assert summary["evidence_dir"].startswith("sftp://nobody@")
    checked = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert checked.returncode == 0, checked.stdout.decode()
    start = json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])
    assert start["sink"]["host_key"] == server.fingerprint
    assert start["sink"]["in_place"] is (account == "dropbox")
    assert not any(p.name.endswith("%part") for p in evidence.rglob("*"))


def test_nothing_written_on_the_client(server: SftpServer, tmp_path: Path) -> None:
    """strace every open for writing, create, rename, unlink and mkdir of the client:
    none lands on a disk (a memfd read-back of the run log is no file)."""
    trace = tmp_path / "trace"
    argv = _argv(server, server.plain_key, "--only", "files", "--path", _tree(tmp_path, 2))
    cli = argv[:4]
    calls = "openat,open,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat"
    strace = ["strace", "-f", "-qq", "-y", "-o", str(trace), "-e", f"trace={calls}"]
    done = _run([*cli, *strace, *argv[4:]])
    assert done.returncode == 0, done.stderr.decode()
    writes = [
        _written_path(line)
        for line in trace.read_text().splitlines()
        if any(w in line for w in ("O_WRONLY", "O_RDWR", "O_CREAT", "unlink", "rename", "mkdir"))
        and "= -1" not in line
    ]
    outside = [p for p in writes if p not in ("/dev/null",) and not p.startswith("/dev/tty")]
    assert not outside, outside
    assert _evidence_dirs(server)


def test_import_runs_no_host_program() -> None:
    """asyncssh's ctypes.util.find_library (ldconfig, gcc) is disarmed at import."""
    trace_argv = ["strace", "-f", "-qq", "-e", "trace=execve", "-o", "/dev/stdout"]
    code = "import sys, agent.sinks._ssh as s; s.load(); assert 'asyncssh' in sys.modules"
    done = subprocess.run(
        [*trace_argv, sys.executable, "-B", "-c", code], capture_output=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    execs = [line for line in done.stdout.decode().splitlines() if "execve(" in line]
    assert len(execs) == 1 and sys.executable.rsplit("/", 1)[-1] in execs[0], execs


def test_wrong_host_key_is_refused_before_collecting(server: SftpServer, tmp_path: Path) -> None:
    argv = _argv(server, server.plain_key, "--only", "files", "--path", _tree(tmp_path, 1))
    argv[argv.index(server.fingerprint)] = server.wrong_fingerprint
    done = _run(argv)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "not the pinned one" in lines[0], lines
    assert _evidence_dirs(server) == []
    unpinned = _run([a for a in argv if a not in ("--sink-host-key", server.wrong_fingerprint)])
    assert unpinned.returncode == 2 and b"must be pinned" in unpinned.stderr


def test_a_known_hosts_file_pins_too(server: SftpServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[{server.addr}]:2222 {server.host_key_pub.read_text()}")
    argv = _argv(server, server.plain_key, "--only", "system")
    argv[argv.index(server.fingerprint)] = str(known)
    done = _run(argv)
    assert done.returncode == 0, done.stderr.decode()


def test_a_pin_file_of_a_key_the_server_does_not_prefer(server: SftpServer) -> None:
    """The server has an Ed25519 and an ECDSA key; the .pub file pins the ECDSA one only.
    Its type is in the file, so ssh asks for that key (HostKeyAlgorithms from the pin):
    accepted, and the journal names that key. A bare fingerprint of it says no type:
    ssh's default order gets the Ed25519 key, refused as not pinned (docs/remote.md)."""
    ecdsa = subprocess.run(["ssh-keygen", "-lf", server.ecdsa_pub], capture_output=True, text=True)
    fingerprint = ecdsa.stdout.split()[1]
    argv = _argv(server, server.plain_key, "--only", "system")
    argv[argv.index(server.fingerprint)] = str(server.ecdsa_pub)
    done = _run(argv)
    assert done.returncode == 0, done.stderr.decode()
    (evidence,) = _evidence_dirs(server)
    start = json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])
    assert start["sink"]["host_key"] == fingerprint
    argv[argv.index(str(server.ecdsa_pub))] = fingerprint
    refused = _run(argv)
    assert refused.returncode == 2 and b"not the pinned one" in refused.stderr


def test_sigkill_leaves_a_prefix_verify_proves(server: SftpServer, tmp_path: Path) -> None:
    """Killed mid-stream through the drop-box: verify on the server holds up to the last
    seal and names the copy that was being written from its 'begin' record."""
    src = _tree(tmp_path, files=60, size=1_000_000)
    proc = subprocess.Popen(
        _argv(server, server.dropbox_key, "--only", "files", "--path", src),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ENV,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    stored: list[Path] = []
    while time.monotonic() < deadline and len(stored) < 8:
        time.sleep(0.05)
        stored = [p for p in server.evidence.rglob("f*") if p.is_file()]
    assert len(stored) >= 8, "the stream did not start"
    # ip netns exec execs the program in place: proc.pid is preserve itself.
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    (evidence,) = _evidence_dirs(server)
    result = verify(evidence, "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1, report
    assert report["sealed_through_seq"] is not None
    problems = report["files"]["problems"]
    incomplete = [f for f in problems if f["status"] == "incomplete"]
    assert incomplete
    named = [f for f in incomplete if "incomplete copy from a killed run (seq" in f["detail"]]
    assert named or all("run log" in f["detail"] for f in incomplete), incomplete
    assert not [f for f in problems if f["status"] in ("changed", "unexpected")], problems


def test_the_dropbox_denies_deletion(server: SftpServer, tmp_path: Path) -> None:
    done = _run(_argv(server, server.dropbox_key, "--only", "system"))
    assert done.returncode == 0, done.stderr.decode()
    (evidence,) = _evidence_dirs(server)
    remote = f"/evidence/{evidence.name}"
    for command in (f"rm {remote}/custody.jsonl", f"rename {remote}/signer.pub {remote}/x"):
        tried = server.sftp_batch(server.dropbox_key, command + "\n")
        assert tried.returncode != 0, (command, tried.stdout, tried.stderr)
    assert (evidence / "custody.jsonl").exists() and (evidence / "signer.pub").exists()
    assert verify(evidence).returncode == 0


ISOLATED_RUN = r"""
set -u
mount -t tmpfs isolated-run /run
connect="import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)"
probe() { "$PY" -c "$connect" "$@"; }
probe "$ADDR" "$OTHER" && echo "before: other open"
"$@" > "$OUT/summary.json"; echo "preserve exit $?"
probe "$ADDR" "$OTHER" || echo "after: other blocked"
probe "$ADDR" 2222 && echo "after: sink open"
ls /run/preserve/.preserve-isolation
"$PY" -B -c "$CODE" release -o /run/preserve > /dev/null; echo "release exit $?"
probe "$ADDR" "$OTHER" && echo "released: other open"
"""


def test_isolate_keeps_the_sink_reachable_and_the_state_in_run(
    server: SftpServer, tmp_path: Path
) -> None:
    """Real nftables in the client's namespace: the server's SSH port stays open through
    the cut, another port on the same server is blocked, the release state lives in
    /run/preserve (a tmpfs here, private to the test) and 'preserve release' finds it."""
    if not shutil.which("nft"):
        pytest.skip("nft not installed")
    listener = subprocess.Popen(
        ["ip", "netns", "exec", server.ns["srv"], sys.executable, "-c",
         "import socket,time; s=socket.create_server(('0.0.0.0', 2299)); "
         "[s.accept() for _ in iter(int, 1)]"],
    )  # fmt: skip
    try:
        time.sleep(0.5)
        argv = _argv(server, server.plain_key, "--only", "files", "--path", _tree(tmp_path, 2))
        env = {**ENV, "PY": sys.executable, "ADDR": server.addr, "OTHER": "2299",
               "OUT": str(tmp_path), "CODE": PRESERVE_CODE}  # fmt: skip
        script = ["unshare", "-m", "--propagation", "private", "sh", "-c", ISOLATED_RUN, "sh"]
        done = subprocess.run(
            [*argv[:4], *script, *argv[4:], "--isolate"],
            capture_output=True, cwd=ROOT, env=env, timeout=120,
        )  # fmt: skip
    finally:
        listener.kill()
        listener.wait(5)
    out = done.stdout.decode()
    for line in ("before: other open", "preserve exit 0", "after: other blocked",
                 "after: sink open", "release exit 0", "released: other open"):  # fmt: skip
        assert line in out, (out, done.stderr.decode())
    summary = json.loads((tmp_path / "summary.json").read_text())
    isolation = summary["isolation"]
    assert isolation["status"] == "in-force"
    assert isolation["state_file"].startswith("/run/preserve/.preserve-isolation/")
    assert isolation["release_command"] == "preserve release -o /run/preserve"
    sink = [a for a in isolation["allow"] if a.get("source") == "sftp sink"]
    assert sink and str(server.addr) in json.dumps(sink) and "2222" in json.dumps(sink), sink
    (evidence,) = _evidence_dirs(server)
    assert verify(evidence).returncode == 0
    records = [json.loads(line) for line in (evidence / "custody.jsonl").read_bytes().splitlines()]
    applied = [r for r in records if r.get("action") == "isolation-applied"]
    assert applied and applied[0]["state_file"].startswith("/run/preserve/")


def test_isolate_with_a_remote_output_refuses_a_run_on_disk(
    server: SftpServer, tmp_path: Path
) -> None:
    """/run not in memory (a disk directory bound over it, in a private mount namespace):
    the release state would land on the host's disk; exit 2, nothing collected."""
    disk = tmp_path / "disk-run"
    disk.mkdir()
    argv = _argv(server, server.plain_key, "--only", "files", "--path", _tree(tmp_path, 1))
    script = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              f'mount --bind {disk} /run && exec "$@"', "sh"]  # fmt: skip
    done = _run([*argv[:4], *script, *argv[4:], "--isolate"])
    assert done.returncode == 2, done.stderr.decode()
    assert b"is not in memory here" in done.stderr
    assert _evidence_dirs(server) == [] and not list(disk.iterdir())


# A failed request, caught by its caller, inside a frame that holds a view of an mmap
# (the imaging pipeline's buffers): with the cyclic GC off, nothing may keep that frame.
HOLDS_A_VIEW = """
import gc, mmap, sys
from pathlib import Path
from agent.sinks import open_destination, parse_target
gc.disable()
destination = open_destination(parse_target(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
sink = destination.open_sink("view-probe")
buf = mmap.mmap(-1, 4096)

def holding(view):
    try:
        sink.listdir("no-such-directory")
    except OSError:
        pass

holding(memoryview(buf))
buf.close()  # BufferError if the failure is still alive, with this frame in its traceback
destination.close()
print("closed")
"""


def test_a_failed_request_keeps_no_caller_buffer_alive(server: SftpServer) -> None:
    """The exception a failed request raises through its concurrent future must not sit
    in a reference cycle with the frame that waited (the future as its local): that
    cycle keeps every caller's frame, and the buffers they view, until the cyclic GC
    runs, so closing a buffer there raised BufferError now and then (an image streamed
    to the server, whose first part's directory was made again: a failed mkdir)."""
    argv = server.in_cli(
        sys.executable, "-B", "-c", HOLDS_A_VIEW, server.url(), server.fingerprint,
        server.plain_key,
    )  # fmt: skip
    done = subprocess.run(argv, capture_output=True, cwd=ROOT, env=ENV, timeout=60)
    assert done.returncode == 0 and done.stdout == b"closed\n", done.stderr.decode()[-2000:]
