# ruff: noqa: F811  (the server fixture is shared with test_sftp_sink)
"""The SFTP sink's default transport, OpenSSH's ``ssh -s sftp`` (agent/sinks/openssh.py),
against the real sshd of tests/sftp_server.py: a run through ssh arrives and verifies
and the journal names the ssh it ran; ssh itself checks the pin (KnownHostsCommand: this
interpreter, isolated, never a host program; no key exchange of preserve's own before);
a wrong pin refuses before ssh offers the client key; ssh writes nothing on the host (its
key is a memfd); a SIGKILL leaves a
verifiable prefix and no ssh behind; Ctrl-C while reconnecting ends the wait cleanly;
the drop-box account works; ``--sink-transport asyncssh`` runs no ssh at all. And the
SFTP parser (agent/sinks/wire.py) against a hostile server's replies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, verify
from sftp_server import PORT, SftpServer
from test_hostile import _written_path
from test_sftp_link import _connected, _link, _streaming
from test_sftp_sink import ENV, _argv, _evidence_dirs, _run, _tree, server  # noqa: F401

from agent.sinks import openssh, sshproc
from agent.sinks.pipe import PipeWriter
from agent.sinks.sftpcodec import MAX_PACKET, ProtocolError, SftpLinkLost, SftpNoSuchFile
from agent.sinks.wire import WireClient

needs_server = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ssh") or not shutil.which("strace"),
    reason="needs root, ssh and strace",
)
STRACE = ["strace", "-f", "-qq", "-y", "-s", "200"]


def _start(evidence: Path) -> dict:
    return json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])


def _execs(trace: Path) -> list[str]:
    return [line for line in trace.read_text().splitlines() if "execve(" in line and "= 0" in line]


def _ssh_processes(server: SftpServer) -> list[str]:
    """This test's ssh clients (other tests may run their own)."""
    found = subprocess.run(["pgrep", "-a", "-x", "ssh"], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if server.addr in line.split()]


@needs_server
@pytest.mark.parametrize("account", ["plain", "dropbox"])
def test_a_run_through_ssh_arrives_and_verifies(
    server: SftpServer, tmp_path: Path, account: str
) -> None:
    key = server.plain_key if account == "plain" else server.dropbox_key
    trace = tmp_path / "trace"
    argv = _argv(server, key, "--only", "files", "--path", _tree(tmp_path))
    done = _run([*argv[:4], *STRACE, "-e", "trace=execve,connect", "-o", trace, *argv[4:]])
    assert done.returncode == 0, done.stderr.decode()
    (evidence,) = _evidence_dirs(server)
    assert verify(evidence, "--fingerprint", json.loads(done.stdout)["fingerprint"]).returncode == 0
    sink = _start(evidence)["sink"]
    ssh = os.path.realpath(shutil.which("ssh") or "")
    assert sink["transport"] == "openssh" and sink["ssh"] == ssh
    assert sink["ssh_sha256"] == hashlib.sha256(Path(ssh).read_bytes()).hexdigest()
    assert sink["in_place"] is (account == "dropbox")
    # The streaming session's ssh, and perhaps the fsync session's (sidefsync), alike.
    ran = [line for line in _execs(trace) if f'execve("{ssh}"' in line]
    assert 1 <= len(ran) <= 2, ran
    for option in ("-F\", \"/dev/null", "StrictHostKeyChecking=yes", "BatchMode=yes",
                   "IdentitiesOnly=yes", "ControlMaster=no", "ProxyCommand=none",
                   "UpdateHostKeys=no", "ForwardAgent=no", "\"-s\"", "UserKnownHostsFile=none",
                   f"KnownHostsCommand='{sys.executable}' '-I' '-S'"):  # fmt: skip
        assert all(option in line for line in ran), (option, ran)
    # ssh's own key exchange is the only one: preserve opens no connection to the server
    # (the asyncssh probe did, before ssh), and the helper ran once an ssh, for HOSTNAME.
    ssh_pids = {line.split()[0] for line in ran}
    dialled = [line for line in trace.read_text().splitlines()
               if "connect(" in line and f"htons({PORT})" in line]  # fmt: skip
    assert dialled and all(line.split()[0] in ssh_pids for line in dialled), dialled
    helpers = [line for line in _execs(trace) if '"-I", "-S", "-c"' in line]
    assert 1 <= len(helpers) <= len(ran), helpers
    for helper in helpers:
        assert f'execve("{sys.executable}"' in helper and '"HOSTNAME", "SHA256:' in helper
    assert sink["host_key"] == server.fingerprint
    assert not _ssh_processes(server)  # ssh ended with the run


@needs_server
def test_a_wrong_pin_refuses_before_the_key_is_offered(server: SftpServer, tmp_path: Path) -> None:
    """ssh asks the helper, which vouches for nothing: ssh's 'Host key verification
    failed' is the same one-line refusal, exit 2, nothing collected, and the server never
    saw a login attempt (the client key is not offered to a server that is not pinned)."""
    trace = tmp_path / "trace"
    argv = _argv(server, server.plain_key, "--only", "files", "--path", _tree(tmp_path, 1))
    argv[argv.index(server.fingerprint)] = server.wrong_fingerprint
    done = _run([*argv[:4], *STRACE, "-e", "trace=execve", "-o", trace, *argv[4:]])
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "not the pinned one" in lines[0], lines
    assert _evidence_dirs(server) == []
    (helper,) = [line for line in _execs(trace) if '"-I", "-S", "-c"' in line]
    assert '"HOSTNAME"' in helper and server.wrong_fingerprint in helper, helper
    log = server.log.read_text()
    assert "publickey" not in log and "Accepted" not in log, log


def _helper(*argv: str) -> subprocess.CompletedProcess[str]:
    helper = openssh.helper_argv()
    assert helper is not None
    return subprocess.run([*helper, *argv], capture_output=True, text=True, env={}, timeout=30)


def test_the_helper_vouches_only_for_a_pinned_key_asked_about_by_name() -> None:
    """The KnownHostsCommand (argv %I %f %t %K PIN...): one known_hosts line under the
    alias, and the fingerprint on stderr, only for HOSTNAME and a pinned fingerprint."""
    pin, other = "SHA256:" + "A" * 43, "SHA256:" + "B" * 43
    yes = _helper("HOSTNAME", pin, "ssh-ed25519", "AAAAkey", other, pin)
    assert yes.returncode == 0
    assert yes.stdout == "preserve-sink ssh-ed25519 AAAAkey\n"
    assert openssh.seen_host_key(yes.stderr.encode(), {pin, other}) == pin
    for argv in (
        ("HOSTNAME", other, "ssh-ed25519", "AAAAkey", pin),  # not pinned
        ("ADDRESS", pin, "ssh-ed25519", "AAAAkey", pin),  # CheckHostIP's question
        ("ORDER", "NONE", "NONE", "NONE", pin),
        ("HOSTNAME", pin, "ssh-ed25519", "AAAAkey"),  # no pins at all
    ):
        no = _helper(*argv)
        assert (no.returncode, no.stdout, no.stderr) == (0, "", ""), (argv, no)
    # A line on ssh's stderr naming a key that is not pinned is not taken for the pin.
    assert openssh.seen_host_key(b"preserve-sink-host-key " + other.encode(), {pin}) is None


def test_the_helper_is_this_interpreter_isolated_and_never_in_the_kit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never a program of the host's: the interpreter already running preserve, with -I
    (no PYTHON* variables, no user site) and -S (no site); its command line quotes every
    word and carries no % but ssh's tokens. In the frozen kit there is no bare
    interpreter: no helper, the asyncssh probe instead."""
    helper = openssh.helper_argv()
    assert helper is not None and helper[:4] == [sys.executable, "-I", "-S", "-c"]
    line = openssh.known_hosts_command(helper, {"SHA256:" + "A" * 43})
    assert line.startswith(f"'{sys.executable}' '-I' '-S' '-c' 'import sys;")
    assert line.replace("%I %f %t %K", "").count("%") == 0 and "\\" not in line
    assert line.endswith("' %I %f %t %K SHA256:" + "A" * 43)
    monkeypatch.setattr(sshproc, "frozen_kit_dir", lambda: "/media/kit")
    assert openssh.helper_argv() is None
    monkeypatch.undo()
    monkeypatch.setattr(sys, "executable", "/opt/odd 'name'/python3")
    assert openssh.helper_argv() is None


@needs_server
def test_a_key_the_server_does_not_know_is_one_line_exit_2(
    server: SftpServer, tmp_path: Path
) -> None:
    """ssh's own 'Permission denied (publickey)' becomes the sink's refusal."""
    stranger = server.tmp / "keys" / "other_host"
    done = _run(_argv(server, stranger, "--only", "files", "--path", _tree(tmp_path, 1)))
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "the server refused the key" in lines[0], lines
    assert _evidence_dirs(server) == [] and not _ssh_processes(server)


@needs_server
def test_a_refusal_after_ssh_started_leaves_no_ssh(server: SftpServer, tmp_path: Path) -> None:
    """ssh started early, then a usage error (an unknown collector): exit 2, one line,
    and the ssh is gone when preserve is."""
    done = _run(_argv(server, server.dropbox_key, "--only", "nosuch"))
    assert done.returncode == 2, done.stderr.decode()
    assert len(done.stderr.decode().strip().splitlines()) == 1, done.stderr.decode()
    assert not _ssh_processes(server) and _evidence_dirs(server) == []


def test_only_a_key_without_passphrase_goes_to_ssh_as_it_is(tmp_path: Path) -> None:
    plain, locked = tmp_path / "plain", tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", plain], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", locked], check=True)
    assert sshproc.plain_openssh_key(plain.read_bytes())
    assert not sshproc.plain_openssh_key(locked.read_bytes())
    pem = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
    for data in (b"", b"garbage", pem, plain.read_bytes().replace(b"b3Blbn", b"b3Blbm")):
        assert not sshproc.plain_openssh_key(data), data


@needs_server
def test_a_passphrase_protected_key_is_decrypted_in_preserve(
    server: SftpServer, tmp_path: Path
) -> None:
    """The passphrase from the environment decrypts the key in preserve; ssh gets the
    key unencrypted in a memfd, and the passphrase is in no argv, output or journal."""
    key, secret = tmp_path / "locked", "correct horse battery staple 7"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-f", key], check=True)
    with server.authorized.open("a") as f:
        f.write(f'restrict,command="internal-sftp" {key.with_suffix(".pub").read_text()}')
    trace = tmp_path / "trace"
    argv = _argv(server, key, "--only", "system")
    env = {**ENV, "PRESERVE_SINK_KEY_PASSPHRASE": secret}
    done = subprocess.run(
        [*argv[:4], *STRACE, "-e", "trace=execve", "-o", trace, *argv[4:]],
        capture_output=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    (evidence,) = _evidence_dirs(server)
    everything = done.stdout + done.stderr + trace.read_bytes()
    everything += b"".join(p.read_bytes() for p in evidence.rglob("*") if p.is_file())
    assert secret.encode() not in everything
    without = _run(argv)  # no passphrase and no terminal to ask on
    assert without.returncode == 2 and b"is passphrase-protected" in without.stderr


@needs_server
def test_ssh_writes_nothing_on_the_host(server: SftpServer, tmp_path: Path) -> None:
    """Every open, create, rename, unlink and mkdir of preserve, of ssh and of its
    KnownHostsCommand, traced: none writes a file; ssh reads its key from preserve's
    memfd, and no known_hosts file at all (the helper answers)."""
    trace = tmp_path / "trace"
    calls = "openat,open,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat"
    argv = _argv(server, server.dropbox_key, "--only", "files", "--path", _tree(tmp_path, 2))
    done = _run([*argv[:4], *STRACE, "-e", f"trace={calls},execve", "-o", trace, *argv[4:]])
    assert done.returncode == 0, done.stderr.decode()
    lines = trace.read_text().splitlines()
    writes = [
        _written_path(line)
        for line in lines
        if any(w in line for w in ("O_WRONLY", "O_RDWR", "O_CREAT", "unlink", "rename", "mkdir"))
        and "= -1" not in line
        and "execve(" not in line
    ]
    outside = [p for p in writes if p not in ("/dev/null",) and not p.startswith("/dev/tty")]
    assert not outside, outside
    memfds = [line for line in lines if "/fd/" in line and "memfd:preserve-" in line]
    assert any("preserve-sink-key" in line for line in memfds), memfds
    assert not [line for line in memfds if "known-hosts" in line], memfds
    assert [line for line in lines if "execve(" in line and "KnownHostsCommand=" in line]


@needs_server
def test_sigkill_mid_stream_leaves_a_prefix_and_no_ssh(server: SftpServer, tmp_path: Path) -> None:
    proc = _streaming(server, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while _ssh_processes(server) and time.monotonic() < deadline:
        time.sleep(0.1)  # ssh sees its stdin end
    assert not _ssh_processes(server)
    (evidence,) = _evidence_dirs(server)
    report = json.loads(verify(evidence, "--json").stdout)
    assert report["sealed_through_seq"] is not None
    problems = report["files"]["problems"]
    assert [p for p in problems if p["status"] == "incomplete"]
    assert not [p for p in problems if p["status"] in ("changed", "unexpected")], problems


@needs_server
def test_ctrl_c_while_reconnecting_ends_the_wait(server: SftpServer, tmp_path: Path) -> None:
    """The link cut for good: once the run gave it up and is trying to reconnect (for up
    to 120 s), one SIGINT ends it within seconds, in one line, with no ssh left."""
    proc = _streaming(server, tmp_path, "--sink-timeout", "3", "--sink-reconnect", "120")
    _link(server, "down")
    try:
        deadline = time.monotonic() + 30
        while _connected(server):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(2)  # inside the reconnect window
        assert proc.poll() is None
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        _link(server, "up")
    assert took < 8, took
    assert proc.returncode == 1, err.decode()
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "SIGINT received while reconnecting" in lines[0], lines
    assert not _ssh_processes(server)


@needs_server
def test_the_asyncssh_transport_runs_no_ssh(server: SftpServer, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    argv = _argv(server, server.dropbox_key, "--only", "files", "--path", _tree(tmp_path, 2))
    argv += ["--sink-transport", "asyncssh"]
    done = _run([*argv[:4], *STRACE, "-e", "trace=execve", "-o", trace, *argv[4:]])
    assert done.returncode == 0, done.stderr.decode()
    (evidence,) = _evidence_dirs(server)
    assert verify(evidence).returncode == 0
    sink = _start(evidence)["sink"]
    assert sink["transport"] == "asyncssh" and "ssh" not in sink
    assert sink["host_key"] == server.fingerprint
    assert len(_execs(trace)) == 1  # python itself


# -- the parser, against a server that lies -------------------------------------------

VERSION_OK = struct.pack(">IBI", 5, 2, 3)


def _replies(*packets: bytes) -> Exception | None:
    """A WireClient fed ``packets`` as the server's bytes: the error a STAT ends with."""

    async def talk() -> Exception | None:
        reader = asyncio.StreamReader()
        for packet in packets:
            reader.feed_data(packet)
        reader.feed_eof()
        sink_r, sink_w = os.pipe()
        client = WireClient(reader, PipeWriter(sink_w))
        try:
            await client.start()
            await client.stat("/x")
        except Exception as e:
            return e
        finally:
            os.close(sink_r)
        return None

    return asyncio.run(talk())


def _status(rid: int, code: int, text: bytes = b"") -> bytes:
    body = struct.pack(">BII", 101, rid, code) + struct.pack(">I", len(text)) + text + b"\0" * 4
    return struct.pack(">I", len(body)) + body


def test_the_parser_refuses_what_sftp_v3_does_not_allow() -> None:
    huge = struct.pack(">IB", MAX_PACKET + 1, 101)
    assert isinstance(_replies(VERSION_OK, huge), ProtocolError)
    assert isinstance(_replies(struct.pack(">IBI", 5, 2, 6)), ProtocolError)  # not v3
    assert isinstance(_replies(VERSION_OK, _status(99, 0)), ProtocolError)  # never asked
    unknown = struct.pack(">IBI", 5, 77, 1)
    assert isinstance(_replies(VERSION_OK, unknown), ProtocolError)
    short = struct.pack(">IBII", 9, 101, 1, 0)  # a status cut before its message
    assert isinstance(_replies(VERSION_OK, short), ProtocolError)
    status = _replies(VERSION_OK, _status(1, 2, b"no such file"))
    assert isinstance(status, SftpNoSuchFile), status
    # The server going away mid-session is a lost connection, never a guess.
    assert isinstance(_replies(VERSION_OK), SftpLinkLost)


def test_connect_runs_the_callers_work_while_the_connection_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``meanwhile`` (the tool's own hash, in a run) is done by the calling thread while
    the session is being opened, not after; its failure is not the connection's."""
    from agent.sinks import asyncssh_client
    from agent.sinks import connect as connecting
    from agent.sinks.target import SftpTarget, SinkRefusedError

    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    done: list[str] = []

    async def opening(*args: object) -> None:
        while not done:  # finishes only once the caller's work ran
            await asyncio.sleep(0.01)
        raise OSError("stopped here")

    def work() -> None:
        done.append("hashed")
        raise ValueError("the caller's to report")

    monkeypatch.setattr(asyncssh_client, "open_asyncssh", opening)
    target = SftpTarget("u", "192.0.2.1", 22, "/evidence")
    with pytest.raises(SinkRefusedError, match="cannot connect \\(stopped here\\)"):
        connecting.connect(
            target, "SHA256:" + "A" * 43, key, False, transport="asyncssh", meanwhile=work
        )
    assert done == ["hashed"]


def test_a_pin_files_key_types_order_the_host_keys(tmp_path: Path) -> None:
    """known_hosts, .pub and ssh-keygen -lf lines give their types, in order; a bare
    fingerprint, or a file with a line whose type is not said, gives none."""
    from agent.sinks.target import pinned_key_order

    fp = "SHA256:" + "A" * 43
    cases = {
        "[10.0.0.5]:22 ecdsa-sha2-nistp256 AAAAE2 \n10.0.0.5 ssh-ed25519 AAAAC3\n": (
            "ecdsa-sha2-nistp256,ssh-ed25519"
        ),
        "ssh-rsa AAAAB3 root@server\n# a comment\n\n": "rsa-sha2-512,rsa-sha2-256",
        f"384 {fp} root@server (ECDSA)\n256 {fp} root@server (ED25519)\n": (
            "ecdsa-sha2-nistp384,ssh-ed25519"
        ),
        f"{fp}\n": None,
        f"ssh-ed25519 AAAAC3\n{fp}\n": None,
        "ssh-dss AAAAB3\n": None,
    }
    for i, (text, expected) in enumerate(cases.items()):
        pin = tmp_path / f"pin{i}"
        pin.write_text(text)
        assert pinned_key_order(str(pin)) == expected, text
    assert pinned_key_order(fp) is None
    assert pinned_key_order(str(tmp_path / "missing")) is None
