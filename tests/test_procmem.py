"""``procmem``: the memory of flagged processes, from real processes. The end-to-end runs
happen in a private PID namespace the test makes, so the only processes the collection
sees (and reads the memory of) are the test's own."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import suspects
from conftest import PRESERVE_CODE, ROOT, journal_records, preserve, requires_root, verify

from collectors import procmem
from collectors.context import CollectContext
from collectors.procfiles import ProcFilesCollector
from collectors.procmem import ProcMemCollector

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="/proc/PID/mem"), requires_root]


def _run_in_pid_namespace(tmp_path: Path, *args: str) -> Path:
    exe = suspects.build_secret(tmp_path)
    argv = [sys.executable, "-c", PRESERVE_CODE, "--json", "-q", "-o", str(tmp_path / "out")]
    script = (
        f"{shlex.quote(str(exe))} TOKEN42 > {tmp_path}/ready & "
        f"while ! [ -s {tmp_path}/ready ]; do sleep 0.05; done; "
        + " ".join(shlex.quote(a) for a in [*argv, "--only", "processes,procfiles,procmem", *args])
        + "; kill $!"
    )
    result = subprocess.run(
        [
            "unshare",
            "-m",
            "-p",
            "-f",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stderr.decode()
    return Path(json.loads(result.stdout.splitlines()[-1])["evidence_dir"])


def test_secret_in_a_flagged_process_heap_is_preserved(tmp_path: Path) -> None:
    evidence = _run_in_pid_namespace(tmp_path)
    records = journal_records(evidence)
    mem = [r for r in records if r.get("kind") == "process-memory"]
    assert len(mem) == 1 and mem[0]["flags"] == ["exe_in_writable_location"]
    stored = (evidence / mem[0]["path"]).read_bytes()
    assert b"HEAP-SECRET-TOKEN42" in stored
    assert hashlib.sha256(stored).hexdigest() == mem[0]["sha256"]
    index = json.loads((evidence / mem[0]["index"]).read_bytes())
    assert index["memory"]["sha256"] == mem[0]["sha256"]
    heap = [r for r in index["ranges"] if r["path"] == "[heap]"][0]
    at, size = int(heap["stored_at"]), int(heap["stored"])
    assert b"HEAP-SECRET-TOKEN42" in stored[at : at + size]  # the index points at it
    vvar = [r for r in index["ranges"] if r["path"] == "[vvar]"]
    if vvar:  # unreadable through /proc/PID/mem: recorded, not stored
        assert vvar[0]["status"] == "unreadable" and vvar[0]["error"]
    assert verify(evidence).returncode == 0


def test_off_collects_no_memory(tmp_path: Path) -> None:
    evidence = _run_in_pid_namespace(tmp_path, "--process-memory", "off")
    records = journal_records(evidence)
    assert not [r for r in records if str(r.get("kind", "")).startswith("process-memory")]
    off = [r for r in records if r.get("event") == "process-memory-off"]
    assert off and off[0]["flagged_pids"]
    assert not (evidence / procmem.OUT).exists()


def test_caps_per_process_and_in_total(ctx: CollectContext, tmp_path: Path) -> None:
    exe = suspects.build_secret(tmp_path)
    procs = [suspects.start([str(exe), f"T{i}", str(1 << 20)]) for i in range(5)]
    try:
        ctx.shared["process_index"] = {
            p.pid: {"pid": p.pid, "name": "secret", "flags": [{"flag": "exe_deleted"}]}
            for p in procs
        }
        collector = ProcMemCollector()
        collector.cap = 256 * 1024
        collector.collect(ctx)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    records = journal_records(ctx.root)
    mem = [r for r in records if r.get("kind") == "process-memory"]
    assert len(mem) == procmem.TOTAL_FACTOR  # the total cap: 4 x 256 KiB
    assert all(r["size"] <= 256 * 1024 for r in mem)
    for r in mem:  # anonymous memory first: the heap made it under the cap
        assert b"HEAP-SECRET-T" in (ctx.root / r["path"]).read_bytes()
    over = [r for r in records if r["type"] == "skipped" and "total" in r.get("reason", "")]
    assert len(over) == 1


def test_an_injected_library_flags_the_process(ctx: CollectContext, tmp_path: Path) -> None:
    lib = suspects.build_library(tmp_path)
    proc = subprocess.Popen(["sleep", "60"], env={"LD_PRELOAD": str(lib)})
    try:
        for _ in range(100):  # until the loader has mapped it
            if str(lib) in Path(f"/proc/{proc.pid}/maps").read_text():
                break
            time.sleep(0.02)
        ctx.shared["process_index"] = {proc.pid: {"pid": proc.pid, "name": "sleep", "flags": []}}
        ProcFilesCollector().collect(ctx)
        ProcMemCollector().collect(ctx)
    finally:
        proc.kill()
        proc.wait()
    records = journal_records(ctx.root)
    found = [r for r in records if r.get("rule") == "injected-library"]
    assert found and found[0]["pid"] == proc.pid and str(lib) in found[0]["mapped"]
    mem = [r for r in records if r.get("kind") == "process-memory"]
    assert mem and mem[0]["flags"] == ["injected_library"]


def test_size_sets_the_per_process_cap(tmp_path: Path) -> None:
    evidence = _run_in_pid_namespace(tmp_path, "--process-memory", "64K")
    mem = [r for r in journal_records(evidence) if r.get("kind") == "process-memory"][0]
    assert 0 < mem["size"] <= 64 * 1024
    index = json.loads((evidence / mem["index"]).read_bytes())
    assert index["cap"] == 64 * 1024
    assert any(r["status"] == "capped" for r in index["ranges"])
    assert b"HEAP-SECRET-TOKEN42" in (evidence / mem["path"]).read_bytes()  # heap first


@pytest.mark.parametrize("value", ["0", "lots", "-5"])
def test_bad_process_memory_values_are_usage_errors(tmp_path: Path, value: str) -> None:
    result = preserve("-o", tmp_path, "--only", "kernel", "--process-memory", value)
    assert result.returncode == 2
    assert b"--process-memory" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing collected


def test_the_collecting_session_itself_is_never_taken(ctx: CollectContext) -> None:
    """The tool's own process and its ancestors (the responder's shell, sshd) hold the
    responder's secrets: flagged or not, their memory is skipped, and the skip recorded."""
    ours = {os.getpid()} | ({os.getppid()} if os.getppid() > 1 else set())  # never init
    ctx.shared["process_index"] = {
        pid: {"pid": pid, "name": "self", "flags": [{"flag": "exe_deleted"}]} for pid in ours
    }
    ProcMemCollector().collect(ctx)
    records = journal_records(ctx.root)
    assert not [r for r in records if r.get("kind") == "process-memory"]
    skipped = {r["pid"] for r in records if r["type"] == "skipped" and "session" in r["reason"]}
    assert skipped == ours
