"""Cross-view enumeration, against real hiding tricks: a readdir-hooking LD_PRELOAD
library compiled here, a bind mount over /proc/PID, sockets no process holds, argv that
text mode would change. Everything that hides runs in private mount, PID and network
namespaces this test makes (``unshare``); the machine's own /etc and mounts are untouched.
"""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import suspects
from conftest import PRESERVE_CODE, ROOT, collect_json, journal_records, requires_root

from collectors import crossview, kernsockets, rawsys

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux /proc")

HIDER_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
/* libprocesshider-style: readdir()/readdir64() skip /proc entries whose comm is HIDDEN */
static const char *HIDDEN = "evilproc";
static int hidden(const char *name) {
    char path[300], comm[64] = {0};
    if (!name[0] || strspn(name, "0123456789") != strlen(name)) return 0;
    snprintf(path, sizeof path, "/proc/%s/comm", name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    return strcmp(comm, HIDDEN) == 0;
}
#define HOOK(fn, type) \
type *fn(DIR *d) { \
    static type *(*real)(DIR *); \
    if (!real) real = dlsym(RTLD_NEXT, #fn); \
    type *e; \
    while ((e = real(d)) && hidden(e->d_name)) {} \
    return e; \
}
HOOK(readdir, struct dirent)
HOOK(readdir64, struct dirent64)
"""


def _in_namespaces(script: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """``script`` in new mount (private), PID (fresh /proc) and network namespaces."""
    return subprocess.run(
        ["unshare", "-m", "-p", "-n", "-f", "--mount-proc", "--propagation", "private"]
        + ["sh", "-c", script],
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _preserve_line(out: Path, *args: str) -> str:
    argv = [sys.executable, "-c", PRESERVE_CODE, "--json", "-o", str(out), *args]
    return " ".join(shlex.quote(a) for a in argv)


def _evidence(result: subprocess.CompletedProcess[bytes]) -> tuple[dict, Path]:
    assert result.returncode in (0, 1), result.stderr.decode()
    summary = json.loads(result.stdout.splitlines()[-1])
    return summary, Path(summary["evidence_dir"])


def _run_with_pid(script: str) -> tuple[int, dict, Path]:
    """(the pid the script printed as ``PID=N``, the run's summary, its evidence)."""
    result = _in_namespaces(script)
    pid = int(result.stdout.decode().split("PID=")[1].split()[0])
    return (pid, *_evidence(result))


def _processes(evidence: Path) -> dict[int, dict]:
    lines = (evidence / "artifacts/volatile/processes.jsonl").read_bytes().splitlines()
    return {p["pid"]: p for p in map(json.loads, lines)}


def _degraded_events(evidence: Path, view: str) -> list[dict]:
    return [
        r
        for r in journal_records(evidence)
        if r.get("event") == "degraded" and r.get("view") == view
    ]


@requires_root
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_process_hidden_from_readdir_is_found_and_collected(tmp_path: Path) -> None:
    (tmp_path / "hider.c").write_text(HIDER_C)
    lib = tmp_path / "libhider.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib, tmp_path / "hider.c", "-ldl"], check=True)
    shutil.copy("/bin/sleep", tmp_path / "evilproc")
    out = tmp_path / "out"
    out.mkdir()
    script = (
        f"{tmp_path}/evilproc 300 & pid=$!; "
        # until the forked shell has become evilproc, the hook has nothing to hide:
        'until [ "$(cat /proc/$pid/comm)" = evilproc ]; do sleep 0.01; done; '
        # the hook really hides it from libc's view:
        f"LD_PRELOAD={lib} ls /proc | grep -qx $pid && echo NOT-HIDDEN; "
        f"echo PID=$pid; LD_PRELOAD={lib} {_preserve_line(out, '-q', '--only', 'processes')}; "
        "kill $pid"
    )
    result = _in_namespaces(script)
    text = result.stdout.decode()
    assert "NOT-HIDDEN" not in text
    pid = int(text.split("PID=")[1].split()[0])
    summary, evidence = _evidence(result)
    proc = _processes(evidence)[pid]
    assert proc["name"] == "evilproc"
    assert proc["executable"]["sha256"]
    assert "hidden_process" in [f["flag"] for f in proc["flags"]]
    [event] = _degraded_events(evidence, "processes")
    assert event["severity"] == "high" and event["hidden_from"] == ["readdir"]
    assert event["process"]["pid"] == pid and event["process"]["exe_sha256"]
    assert {"view": "processes", "severity": "high"}.items() <= summary["degraded"][0].items()


@requires_root
def test_the_memory_of_a_process_under_a_proc_overmount_is_still_read(tmp_path: Path) -> None:
    """The mount that hides /proc/PID also hides /proc/PID/mem: procmem opens it (and the
    maps) in a fresh proc instance, and the heap secret is in the evidence."""
    exe = suspects.build_secret(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    script = (
        f"{exe} TOKEN77 > {tmp_path}/ready & pid=$!; "
        f"while ! [ -s {tmp_path}/ready ]; do sleep 0.05; done; "
        f"mount --bind {empty} /proc/$pid; echo PID=$pid; "
        f"{_preserve_line(out, '--only', 'processes,procmem')}; kill $pid"
    )
    pid, _, evidence = _run_with_pid(script)
    [mem] = [r for r in journal_records(evidence) if r.get("kind") == "process-memory"]
    assert mem["pid"] == pid and "proc_overmounted" in mem["flags"]
    assert b"HEAP-SECRET-TOKEN77" in (evidence / mem["path"]).read_bytes()
    index = json.loads((evidence / mem["index"]).read_bytes())
    assert index["read_via"] == "fresh-proc" and any(r["path"] == "[heap]" for r in index["ranges"])


@requires_root
def test_a_mount_over_proc_pid_hides_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    script = (
        "sleep 300 & pid=$!; "
        'until [ "$(cat /proc/$pid/comm)" = sleep ]; do sleep 0.01; done; '
        f"mount --bind {empty} /proc/$pid; echo PID=$pid; "
        f"{_preserve_line(out, '--only', 'processes')}; kill $pid"
    )
    pid, summary, evidence = _run_with_pid(script)
    proc = _processes(evidence)[pid]
    assert proc["read_via"] == "fresh-proc" and proc["name"] == "sleep"
    assert proc["exe"] == "/usr/bin/sleep" and proc["executable"]["sha256"]
    assert base64.b64decode(proc["cmdline_b64"]) == b"sleep\x00300\x00"
    assert "proc_overmounted" in [f["flag"] for f in proc["flags"]]
    [event] = _degraded_events(evidence, "proc-mounts")
    assert event["severity"] == "high" and f"/proc/{pid}" in event["reason"]
    assert any(d["view"] == "proc-mounts" for d in summary["degraded"])


SOCKETS_IN_FLIGHT = r"""
import socket, sys, time
tcp = socket.socket(); tcp.bind(("127.0.0.1", 4444)); tcp.listen()
packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
a, b = socket.socketpair()
socket.send_fds(a, [b"x"], [tcp.fileno(), packet.fileno(), raw.fileno()])
for s in (tcp, packet, raw): s.close()   # now only the message in flight holds them
held = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0806))
print("ready", flush=True); time.sleep(300)
"""


@requires_root
def test_sockets_no_process_holds_are_high_findings(tmp_path: Path) -> None:
    (tmp_path / "flight.py").write_text(SOCKETS_IN_FLIGHT)
    out = tmp_path / "out"
    out.mkdir()
    script = (
        f"ip link set lo up; {sys.executable} {tmp_path}/flight.py > {tmp_path}/ready & "
        f"pid=$!; while ! grep -q ready {tmp_path}/ready; do sleep 0.1; done; echo PID=$pid; "
        f"{_preserve_line(out, '--only', 'processes')}; kill $pid"
    )
    pid, summary, evidence = _run_with_pid(script)
    view = json.loads((evidence / "artifacts/volatile/crossview.json").read_bytes())
    ownerless = {
        (s["table"], s.get("lport", s.get("ethertype"))) for s in view["ownerless_sockets"]
    }
    assert {("tcp", 4444), ("packet", "0x0800"), ("raw", 1)} <= ownerless
    held = [s for s in view["kernel_sockets"] if s.get("ethertype") == "0x0806"]
    assert held and held[0]["pids"] == [pid]  # a packet socket psutil never lists, owned
    [event] = _degraded_events(evidence, "sockets")
    assert event["severity"] == "high"
    assert any(d["view"] == "sockets" and d["severity"] == "high" for d in summary["degraded"])


def test_argv_is_stored_byte_exact(tmp_path: Path) -> None:
    args = [b"a\r\nb", b"\xff\xfe not utf-8", b"tab\there"]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args])
    try:
        time.sleep(0.3)
        summary = collect_json(tmp_path, "--only", "processes")
        rec = _processes(Path(summary["evidence_dir"]))[proc.pid]
    finally:
        proc.kill()
        proc.wait()
    raw = base64.b64decode(rec["cmdline_b64"])
    assert raw.split(b"\0")[3:6] == args
    assert rec["cmdline"][3] == "a\r\nb"  # text mode made this "a\nb"
    assert rec["cmdline"][4].encode("utf-8", "surrogateescape") == args[1]


def test_the_probe_finds_what_the_kernel_has() -> None:
    """The native PID-space probe agrees with the kernel for this process and one that
    does not exist, and the raw getdents64 lists what readdir lists."""
    import os

    assert os.getpid() in rawsys.probe_pids(1, crossview.pid_max())
    assert rawsys.syscall("kill", 0x3FFFFF + 1, 0) == -rawsys.ESRCH
    assert {os.getpid()} <= crossview.getdents_view()
    survey = crossview.survey()
    assert os.getpid() in survey.views["probe"] and not survey.hidden.get(os.getpid())
    assert isinstance(kernsockets.read_tables({}), list)


@requires_root
def test_a_process_that_is_gone_gives_the_fresh_reader_s_reason() -> None:
    from collectors import freshproc

    with pytest.raises(OSError, match="No such file"):
        freshproc.open_files(2**22 + 12345, ["maps", "mem"])
