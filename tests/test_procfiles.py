"""``procfiles``: maps, the complete descriptor table and deleted-but-open files, from a
real process that holds a deleted file, a memfd, a pipe and sockets."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import journal_records, requires_root

from collectors import fdtable, procfiles
from collectors.context import CollectContext
from collectors.procfiles import ProcFilesCollector

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="/proc/PID/fd"), requires_root]

HOLDER = r"""
import os, socket, sys, time
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(b"EXFIL-ARCHIVE " * 1000)
held = open(path, "rb")
os.unlink(path)
mem = os.memfd_create("payload")
os.write(mem, b"\x7fELF fileless payload")
r, w = os.pipe()
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
pair = socket.socketpair()
print(held.fileno(), mem, r, w, listener.fileno(), flush=True)
time.sleep(60)
"""
CONTENT = b"EXFIL-ARCHIVE " * 1000


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "loot.tar")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # not pytest's capture file (itself deleted but open)
    )
    assert proc.stdout is not None
    fds = [int(x) for x in proc.stdout.readline().split()]
    yield proc.pid, fds
    proc.kill()
    proc.wait()


def _run(ctx: CollectContext, pid: int) -> list[dict]:
    ctx.shared["process_index"] = {pid: {"pid": pid, "name": "python3", "flags": []}}
    ProcFilesCollector().collect(ctx)
    return journal_records(ctx.root)


def test_descriptor_table_and_deleted_open_file(ctx: CollectContext, holder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pid, (deleted, mem, r, w, listener) = holder
    records = _run(ctx, pid)
    rows = [
        json.loads(x) for x in (ctx.root / procfiles.OUT / "fds.jsonl").read_bytes().splitlines()
    ]
    table = {e["fd"]: e for e in rows[0]["fds"]}
    assert rows[0]["pid"] == pid
    assert table[deleted]["kind"] == "deleted" and table[deleted]["access"] == "r"
    assert table[deleted]["target"] == f"{tmp_path}/loot.tar (deleted)"
    assert table[mem]["kind"] == "memfd" and table[mem]["target"].startswith("/memfd:payload")
    assert table[r]["kind"] == table[w]["kind"] == "pipe"
    assert table[r]["access"] == "r" and table[w]["access"] == "w"
    assert table[listener]["kind"] == "socket"
    assert sum(1 for e in table.values() if e["kind"] == "socket") >= 3  # + the pair
    assert "pos" in table[deleted] and "flags" in table[deleted]
    maps = [
        json.loads(x) for x in (ctx.root / procfiles.OUT / "maps.jsonl").read_bytes().splitlines()
    ]
    assert maps[0]["pid"] == pid and any(
        "[heap]" in line or "python" in line for line in maps[0]["maps"]
    )
    # the deleted file's content, recovered through /proc/PID/fd/N and hashed
    copies = {r["kind"]: r for r in records if r.get("kind") in ("deleted-open", "memfd")}
    assert (ctx.root / copies["deleted-open"]["path"]).read_bytes() == CONTENT
    assert copies["deleted-open"]["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert (ctx.root / copies["memfd"]["path"]).read_bytes() == b"\x7fELF fileless payload"
    found = [x for x in records if x.get("rule") == "deleted-open-file"]
    assert len(found) == 1 and found[0]["severity"] == "MEDIUM" and found[0]["pid"] == pid
    assert found[0]["artifact"] == copies["deleted-open"]["path"]


def test_deleted_open_file_is_capped(ctx: CollectContext, holder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(procfiles, "FILE_CAP", 100)
    pid, _ = holder
    records = _run(ctx, pid)
    copy = [r for r in records if r.get("kind") == "deleted-open"][0]
    assert copy["size"] == 100 and copy["capped"] is True
    assert (ctx.root / copy["path"]).read_bytes() == CONTENT[:100]


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("socket:[123]", "socket"),
        ("pipe:[9]", "pipe"),
        ("anon_inode:[eventfd]", "anon_inode"),
        ("anon_inode:bpf-prog", "anon_inode"),
        ("/memfd:x (deleted)", "memfd"),
        ("/tmp/a b (deleted)", "deleted"),
        ("/dev/null", "device"),
        ("/etc/passwd", "file"),
        ("net:[4026531840]", "namespace"),
        ("weird", "other"),
    ],
)
def test_kind_of(target: str, kind: str) -> None:
    assert fdtable.kind_of(target) == kind


def test_injected_ignores_upgrades_and_shared_memory() -> None:
    maps = fdtable.parse_maps(
        "7f00-7f10 r-xp 0 08:01 5 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)\n"
        "7f10-7f20 rwxs 0 00:01 6 /dev/zero (deleted)\n"
        "7f20-7f30 r-xp 0 08:01 7 /tmp/.x/libhide.so\n"
        "7f30-7f40 r-xp 0 00:01 8 /memfd:jit (deleted)\n"
        "7f40-7f50 r-xp 0 08:01 9 /opt/app/libgone.so (deleted)\n"
        "7f50-7f60 r--p 0 08:01 10 /tmp/data.bin\n"
    )
    assert fdtable.injected(maps, "/usr/bin/app") == [
        "/tmp/.x/libhide.so", "/memfd:jit (deleted)", "/opt/app/libgone.so (deleted)",
    ]  # fmt: skip
