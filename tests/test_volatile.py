"""The volatile collectors against real processes and sockets on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, collect_json, journal_records, requires_root, verify
from evidence_factory import new_writer

from collectors import snapshot

VOLATILE = "processes,network,system"
# Fields refused even to root (this VM's init is protected) are recorded as an event, not
# a failure, so a root run exits 0; a non-root run exits 1 (its snapshot is incomplete).
COLLECTED = (0,) if os.geteuid() == 0 else (1,)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def _collect(tmp_path: Path, *extra: str, only: str = VOLATILE) -> tuple[dict, Path]:
    summary = collect_json(tmp_path / "out", "--only", only, *extra, expect=COLLECTED)
    evidence = Path(summary["evidence_dir"])
    failures = [r for r in journal_records(evidence) if r["type"] == "error"]
    assert summary["counts"]["failed"] == len(failures)
    assert not [r for r in failures if "collector failed" in r["reason"]], failures
    assert summary["exit_code"] == (1 if failures else 0)
    return summary, evidence


def _verified(summary: dict) -> None:
    result = verify(summary["evidence_dir"], "--fingerprint", summary["fingerprint"])
    assert result.returncode == 0, result.stdout.decode()


SERVER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
conn, _ = s.accept()
time.sleep(120)
"""
CLIENT = """
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
time.sleep(120)
"""


def test_listener_and_established_connection(tmp_path: Path, reap: list) -> None:
    marker = "preserve-test-listener-7f3a"
    work = tmp_path / "cwd"
    work.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, marker], stdout=subprocess.PIPE, cwd=work
    )
    reap.append(server)
    port = int(server.stdout.readline())
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port)], stdout=subprocess.PIPE)
    reap.append(client)
    client_port = int(client.stdout.readline())

    summary, evidence = _collect(tmp_path)
    volatile = evidence / "artifacts/volatile"
    procs = {p["pid"]: p for p in _jsonl(volatile / "processes.jsonl")}
    p = procs[server.pid]
    assert p["cmdline"] == [sys.executable, "-c", SERVER, marker]
    assert p["cwd"] == str(work)
    assert p["ppid"] == os.getpid() and p["parents"][0] == os.getpid()
    assert (
        p["executable"]["sha256"]
        == hashlib.sha256(Path(os.path.realpath(sys.executable)).read_bytes()).hexdigest()
    )

    sockets = _jsonl(volatile / "sockets.jsonl")
    listen = [s for s in sockets if s["status"] == "LISTEN" and s["lport"] == port]
    assert [(s["pid"], s["laddr"], s["proto"]) for s in listen] == [
        (server.pid, "127.0.0.1", "tcp")
    ]
    accepted = [s for s in sockets if s["lport"] == port and s["rport"] == client_port]
    assert [(s["pid"], s["status"]) for s in accepted] == [(server.pid, "ESTABLISHED")]
    outgoing = [s for s in sockets if s["lport"] == client_port and s["rport"] == port]
    assert [(s["pid"], s["status"], s["process"]) for s in outgoing] == [
        (client.pid, "ESTABLISHED", procs[client.pid]["name"])
    ]
    assert {(s["lport"], s["status"]) for s in p["sockets"]} >= {
        (port, "LISTEN"),
        (port, "ESTABLISHED"),
    }
    network = json.loads((volatile / "network.json").read_bytes())
    served = [r for r in network["listening"] if r["lport"] == port]
    assert [(r["pid"], r["exe_sha256"]) for r in served] == [
        (server.pid, p["executable"]["sha256"])
    ]
    system = json.loads((volatile / "system.json").read_bytes())
    assert system["hostname"] == socket.gethostname()
    assert system["clocks"]["ntp"]["synchronised"] in (True, False)
    clock = [r for r in journal_records(evidence) if r.get("event") == "host-clock"]
    assert len(clock) == 1 and clock[0]["utc"] == system["clocks"]["utc"]
    # loopback peers are not "remote"
    assert not [s for s in network["remote_established"] if s["rport"] == port]
    text = (volatile / "sockets.txt").read_text()
    assert f"127.0.0.1:{port}" in text and "LISTEN" in text
    assert marker in (volatile / "processes.txt").read_text()

    records = journal_records(evidence)
    snap = [r for r in records if r["type"] == "event" and r.get("event") == "snapshot"]
    assert len(snap) == 1 and snap[0]["parts"] == ["processes", "sockets"]
    assert int(snap[0]["duration_ns"]) == int(snap[0]["mono_end_ns"]) - int(
        snap[0]["mono_start_ns"]
    )
    # the volatile state is signed before anything else happens (isolation, slow stage)
    seal = next(r for r in records if r["type"] == "seal" and r["reason"] == "after stage volatile")
    volatile_seqs = [
        r["seq"] for r in records if r["type"] == "artifact" and r["path"].startswith("artifacts/")
    ]
    assert volatile_seqs and max(volatile_seqs) < seal["seq"]
    stored = {r["path"] for r in records if r["type"] == "artifact"}
    for name in (
        "processes.jsonl",
        "processes.txt",
        "sockets.jsonl",
        "sockets.txt",
        "network.json",
        "system.json",
        "system.txt",
    ):
        assert f"artifacts/volatile/{name}" in stored
    _verified(summary)


def test_deleted_executable_is_flagged_and_preserved(tmp_path: Path, reap: list) -> None:
    original = Path(shutil.which("sleep") or "/bin/sleep")
    binary = tmp_path / "implant"
    shutil.copy2(original, binary)
    proc = subprocess.Popen([str(binary), "300"])
    reap.append(proc)
    _wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe") == str(binary))
    binary.unlink()

    summary, evidence = _collect(tmp_path, only="processes")
    procs = {p["pid"]: p for p in _jsonl(evidence / "artifacts/volatile/processes.jsonl")}
    p = procs[proc.pid]
    flags = {f["flag"] for f in p["flags"]}
    assert {"exe_deleted", "exe_in_writable_location"} <= flags
    assert p["exe_deleted"] is True and p["exe"] == f"{binary} (deleted)"
    want = hashlib.sha256(original.read_bytes()).hexdigest()
    assert p["executable"]["sha256"] == want
    stored = evidence / p["executable"]["preserved_as"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == want
    artifact = [
        r
        for r in journal_records(evidence)
        if r["type"] == "artifact"
        and r.get("kind") == "deleted-executable"
        and r.get("pid") == proc.pid
    ]
    assert len(artifact) == 1 and artifact[0]["sha256"] == want
    assert artifact[0]["source"]["path"] == f"/proc/{proc.pid}/exe"
    assert "exe_deleted" in (evidence / "artifacts/volatile/processes.txt").read_text()
    rows = dict(map(tuple, summary["summary_rows"]))
    assert rows["Red flags"].split()[0].isdigit() and "processes.txt" in rows["Red flags"]
    assert "processes" in rows["Volatile snapshot"]
    _verified(summary)


ZOMBIE_PARENT = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print(pid, flush=True)
time.sleep(120)
"""


def test_zombie_and_exiting_processes_do_not_break_the_snapshot(tmp_path: Path, reap: list) -> None:
    parent = subprocess.Popen([sys.executable, "-c", ZOMBIE_PARENT], stdout=subprocess.PIPE)
    reap.append(parent)
    zombie = int(parent.stdout.readline())
    _wait_for(lambda: Path(f"/proc/{zombie}/stat").read_text().split(") ")[1][0] == "Z")
    # Short-lived processes appear and vanish all through the enumeration.
    churn = subprocess.Popen(["/bin/sh", "-c", "while :; do /bin/true; done"])
    reap.append(churn)

    summary, evidence = _collect(tmp_path, only="processes,network")
    procs = {p["pid"]: p for p in _jsonl(evidence / "artifacts/volatile/processes.jsonl")}
    z = procs[zombie]
    assert z["status"] == "zombie" and z["ppid"] == parent.pid
    assert "flags" in z and not z.get("vanished")
    findings = [r for r in journal_records(evidence) if r.get("event") == "process-findings"]
    assert zombie in findings[0]["zombies"]
    _verified(summary)


def test_a_process_gone_before_it_is_read_is_reported_not_raised() -> None:
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    assert snapshot._Reader(False).read(proc.pid, {}) is None


def test_a_process_exiting_mid_read_keeps_what_was_read(monkeypatch) -> None:
    proc = subprocess.Popen(["/bin/sleep", "30"])
    try:
        original = snapshot.PSUTIL_FIELDS

        def kill_then_cwd(p):
            proc.kill()
            proc.wait()
            return p.cwd()

        monkeypatch.setattr(snapshot, "PSUTIL_FIELDS", [*original[:2], ("cwd", kill_then_cwd)])
        rec = snapshot._Reader(False).read(proc.pid, {})
        assert rec is not None and rec["vanished"] is True and rec["name"] == "sleep"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_environment_is_not_collected_unless_asked(tmp_path: Path, reap: list) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    proc = subprocess.Popen(["/bin/sleep", "300"], env={"PRESERVE_TEST_TOKEN": secret})
    reap.append(proc)
    _wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep"))

    summary, evidence = _collect(tmp_path / "off")
    hits = [p for p in evidence.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert hits == []
    procs = {p["pid"]: p for p in _jsonl(evidence / "artifacts/volatile/processes.jsonl")}
    assert "environ" not in procs[proc.pid]

    summary, evidence = _collect(tmp_path / "on", "--collect-env", only="processes")
    procs = {p["pid"]: p for p in _jsonl(evidence / "artifacts/volatile/processes.jsonl")}
    assert procs[proc.pid]["environ"] == {"PRESERVE_TEST_TOKEN": secret}


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NOBODY_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
REPO = Path(__file__).resolve().parent.parent


def _interpreter_for_nobody() -> tuple[str, dict[str, str]]:
    """This venv's Python, or, when it lives somewhere nobody cannot enter (a pyenv under
    /root), the system Python of the same version with this venv's packages on its path."""
    import site

    probe = "import psutil, click, structlog, cryptography, rfc8785"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    extra = {"PYTHONPATH": os.pathsep.join(site.getsitepackages())}
    for exe, env in ((sys.executable, {}), (f"/usr/bin/{version}", extra)):
        ok = subprocess.run(
            [*NOBODY, exe, "-c", probe], capture_output=True, env={**NOBODY_ENV, **env}, cwd=REPO
        )
        if ok.returncode == 0:
            return exe, env
    pytest.skip("no Python interpreter with this project's packages is usable by nobody")


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """An output directory nobody can reach (pytest's tmp_path is under a 0700 dir)."""
    path = Path(tempfile.mkdtemp(prefix="preserve-nobody-"))
    path.chmod(0o755)
    out = path / "out"
    out.mkdir()
    os.chown(out, 65534, 65534)
    yield out
    shutil.rmtree(path)


@requires_root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_non_root_run_records_what_was_denied(nobody_dir: Path) -> None:
    out = nobody_dir
    exe, env = _interpreter_for_nobody()
    result = subprocess.run(
        [*NOBODY, exe, "-c", PRESERVE_CODE, "--json", "-o", str(out), "--only", VOLATILE],
        capture_output=True,
        cwd=REPO,
        env={**NOBODY_ENV, **env},
        timeout=120,
    )
    assert result.returncode == 1, result.stderr.decode()
    summary = json.loads(result.stdout)
    evidence = Path(summary["evidence_dir"])
    records = journal_records(evidence)
    assert records[0]["euid"] == 65534
    errors = [r for r in records if r["type"] == "error"]
    assert summary["counts"]["failed"] == len(errors) > 0
    denied = [r for r in errors if r["collector"] == "processes"]
    assert len(denied) == 1 and "run as root" in denied[0]["reason"]
    assert 1 in denied[0]["denied_pids"] and denied[0]["denied_fields"]["exe"] > 0
    procs = {p["pid"]: p for p in _jsonl(evidence / "artifacts/volatile/processes.jsonl")}
    assert "exe" in procs[1]["denied"] and procs[1]["exe"] is None
    # Its own processes are complete; a zombie of nobody's (an sshd of another test, not yet
    # reaped by its parent) has nothing left to read, which is not a denial.
    mine = [
        p
        for p in procs.values()
        if p.get("uids") and p["uids"][0] == 65534 and p.get("status") != "zombie"
    ]
    assert mine and all(not p["denied"] for p in mine), [p for p in mine if p["denied"]]
    _verified(summary)


def test_red_flag_rules() -> None:
    from collectors import redflags

    me = os.getpid()
    fake = {"pid": me, "ppid": 1, "name": "kworker/0:1", "cmdline": ["[kworker/0:1]"]}
    names = {f["flag"] for f in redflags.flags_for(fake, b"/dev/shm/x (deleted)", True)}
    assert names == {
        "exe_deleted",
        "exe_in_writable_location",
        "name_mismatch",
        "kernel_thread_name",
        "listening_outside_package_paths",
    }
    kthread = {"pid": 55, "ppid": 2, "name": "kworker/0:1", "cmdline": []}
    assert redflags.flags_for(kthread, None, False) == []
    script = {"pid": me, "ppid": 1, "name": "backup.sh", "cmdline": ["/bin/sh", "/opt/backup.sh"]}
    assert "name_mismatch" not in {
        f["flag"] for f in redflags.flags_for(script, b"/usr/bin/dash", False)
    }


def test_utmp_records_are_parsed() -> None:
    import struct

    from collectors import _linux

    rec = struct.pack(
        "<hh i 32s 4s 32s 256s hh i ii 4i 20s",
        7,
        0,
        4242,
        b"pts/3",
        b"ts/3",
        b"mallory",
        b"203.0.113.9",
        0,
        0,
        0,
        1_790_000_000,
        5,
        struct.unpack("<i", socket.inet_aton("203.0.113.9"))[0],
        0,
        0,
        0,
        b"",
    )
    rows = _linux.parse_utmp(rec + bytes(384))
    assert rows == [
        {
            "type": "USER_PROCESS",
            "pid": 4242,
            "line": "pts/3",
            "id": "ts/3",
            "user": "mallory",
            "host": "203.0.113.9",
            "exit": [0, 0],
            "session": 0,
            "time_s": 1_790_000_000,
            "time_us": 5,
            "address": "203.0.113.9",
        }
    ]


def test_magic_link_copy_needs_the_flag(tmp_path: Path) -> None:
    """Without ``magic_link`` the engine still refuses to follow /proc/self/exe."""
    from collectors.copy import CopyEngine

    engine = CopyEngine(new_writer(tmp_path))
    try:
        assert engine.preserve(b"/proc/self/exe", "a", "t") is None
        rec = engine.preserve(b"/proc/self/exe", "b", "t", magic_link=True)
        assert rec is not None
        want = hashlib.sha256(Path(os.path.realpath("/proc/self/exe")).read_bytes()).hexdigest()
        assert rec["sha256"] == want
    finally:
        engine.shutdown()
        engine.journal.close()


def test_replaced_executable_is_flagged(tmp_path: Path, reap: list) -> None:
    binary = tmp_path / "daemon"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "300"])
    reap.append(proc)
    _wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe") == str(binary))
    swapped = tmp_path / "swap"
    shutil.copy2(shutil.which("true") or "/bin/true", swapped)
    os.replace(swapped, binary)  # what an attacker's "upgrade" of a running binary does

    _, evidence = _collect(tmp_path, only="processes")
    procs = {p["pid"]: p for p in _jsonl(evidence / "artifacts/volatile/processes.jsonl")}
    flags = {f["flag"] for f in procs[proc.pid]["flags"]}
    assert "exe_replaced" in flags and "exe_deleted" in flags
    # untouched processes running the same kind of binary are not flagged
    assert "exe_replaced" not in {f["flag"] for f in procs[os.getpid()]["flags"]}


def _sleep_named(tmp_path: Path, reap: list, name: bytes) -> tuple[subprocess.Popen, Path]:
    """A real process running a copy of ``sleep`` named ``name`` (any bytes)."""
    binary = Path(os.fsdecode(bytes(tmp_path) + b"/" + name))
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", binary)
    proc = subprocess.Popen([binary, "300"])
    reap.append(proc)
    _wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe".encode()).endswith(name))
    return proc, binary


def test_hostile_process_names_reach_no_terminal(tmp_path: Path, reap: list) -> None:
    name = b"\xff\x1b[31mevil\nname"
    proc, binary = _sleep_named(tmp_path, reap, name)

    summary, evidence = _collect(tmp_path, only="processes,network")
    for view in ("processes.txt", "sockets.txt"):
        text = (evidence / "artifacts/volatile" / view).read_bytes()
        assert b"\x1b" not in text and b"\xff" not in text
    assert b"\\x1b[31mevil\\x0aname" in (evidence / "artifacts/volatile/processes.txt").read_bytes()
    procs = {p["pid"]: p for p in _jsonl(evidence / "artifacts/volatile/processes.jsonl")}
    assert procs[proc.pid]["cmdline"][0] == os.fsdecode(bytes(binary))
    _verified(summary)


def test_a_bidi_override_in_a_process_name_is_escaped_in_the_text_view(
    tmp_path: Path, reap: list
) -> None:
    """U+202E (right-to-left override) makes "evil\u202etxt.exe" read as "evilexe.txt" in a
    terminal: the text view shows it as an escape, like every non-printable character."""
    _sleep_named(tmp_path, reap, "evil\u202etxt.exe".encode())
    summary, evidence = _collect(tmp_path, only="processes")
    text = (evidence / "artifacts/volatile/processes.txt").read_bytes()
    assert "\u202e".encode() not in text
    assert b"evil\\u202etxt.exe" in text
    _verified(summary)


def test_kernel_modules_and_taint_are_decoded(tmp_path: Path, monkeypatch) -> None:
    from collectors import _linux

    (tmp_path / "sys/kernel").mkdir(parents=True)
    (tmp_path / "sys/kernel/tainted").write_text("12288\n")  # O (4096) + E (8192)
    (tmp_path / "modules").write_text(
        "rootkit 16384 0 - Live 0x0000000000000000 (OE)\n"
        "ext4 1048576 2 mbcache,jbd2, Live 0xffffffffc0400000\n"
    )
    monkeypatch.setattr(_linux, "PROC", str(tmp_path))
    mods = {m["name"]: m for m in _linux.kernel_modules()}
    assert mods["rootkit"]["taint"] == "OE" and mods["ext4"]["taint"] == ""
    assert mods["ext4"]["used_by"] == ["mbcache", "jbd2"]
    taint = _linux.kernel_taint()
    assert taint["value"] == 12288
    assert [f["letter"] for f in taint["flags"]] == ["O", "E"]


def test_proc_routes_match_the_kernel_view() -> None:
    """/proc/net/route decoded by hand agrees with `ip route` (iproute2, netlink)."""
    from collectors import _linux

    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("iproute2 not installed")
    listed = json.loads(
        subprocess.run(
            [ip, "-j", "-4", "route", "show", "table", "main"], capture_output=True, check=True
        ).stdout
    )
    want = {
        (
            "0.0.0.0/0"
            if r["dst"] == "default"
            else r["dst"]
            if "/" in r["dst"]
            else r["dst"] + "/32",
            r.get("gateway"),
            r.get("dev"),
        )
        for r in listed
    }
    got = {(r["destination"], r["gateway"], r["iface"]) for r in _linux.routes_ipv4()}
    assert got == want


def test_a_fifo_where_a_file_was_expected_does_not_block(tmp_path: Path) -> None:
    from collectors import _linux

    fifo = tmp_path / "evil.service"
    os.mkfifo(fifo)
    began = time.monotonic()
    with pytest.raises(OSError, match="not a regular file"):
        _linux.read_regular(str(fifo), 1024)
    assert time.monotonic() - began < 2
    (tmp_path / "ok").write_bytes(b"x" * 10)
    assert _linux.read_regular(str(tmp_path / "ok"), 4) == b"xxxx"


def test_network_alone_takes_its_own_socket_snapshot(tmp_path: Path, reap: list) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER, "alone"], stdout=subprocess.PIPE)
    reap.append(server)
    port = int(server.stdout.readline())
    summary, evidence = _collect(tmp_path, only="network")
    snap = [r for r in journal_records(evidence) if r.get("event") == "snapshot"]
    assert [s["parts"] for s in snap] == [["sockets"]]
    sockets = _jsonl(evidence / "artifacts/volatile/sockets.jsonl")
    mine = [s for s in sockets if s["lport"] == port and s["status"] == "LISTEN"]
    assert [(s["pid"], s["process"]) for s in mine] == [
        (server.pid, Path(f"/proc/{server.pid}/comm").read_text().strip())
    ]
    assert not (evidence / "artifacts/volatile/processes.jsonl").exists()
    actions = [r for r in journal_records(evidence) if r["type"] == "action"]
    assert {tuple(a["argv"][1:]) for a in actions} >= {("-json", "neigh", "show")}
    assert all(a["argv"][0].startswith(("/usr/", "/bin/", "/sbin/")) for a in actions)
    _verified(summary)
