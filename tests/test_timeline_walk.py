"""The timeline's walk at scale and at its edges: the whole host in a child process,
alongside the rest of its stage; pseudo file systems mounted inside the walked tree not
entered; trees deeper than PATH_MAX; an entry gone before its stat; a child that dies
or a run that stops never taken for a whole bodyfile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, collect_json, journal_records, requires_root
from deeptree import make_deep, scratch

from agent.alongside import Alongside
from collectors import bodywalk
from collectors.bodywalk import BodyWalker
from collectors.context import CollectContext, Options
from collectors.errors import CollectorError, OutputFull
from collectors.forked import run_forked
from collectors.timeline import TimelineCollector


def _body(top: Path) -> tuple[list[bytes], BodyWalker, list[tuple[bytes, OSError]]]:
    chunks: list[bytes] = []
    errors: list[tuple[bytes, OSError]] = []
    walker = BodyWalker(chunks.append, lambda path, e: errors.append((path, e)))
    walker.walk(os.fsencode(top))
    return b"".join(chunks).splitlines(), walker, errors


def _birth_s(path: Path) -> int:
    out = subprocess.run(["stat", "-c", "%W", path], capture_output=True, text=True, check=True)
    return int(out.stdout) if out.stdout.strip().isdigit() else 0


def test_whole_host_in_a_child_alongside_the_stage(tmp_path: Path) -> None:
    planted = tmp_path / "planted.bin"
    planted.write_bytes(b"x")
    summary = collect_json(tmp_path / "out", "--only", "timeline,persistence", expect=(0, 1))
    evidence = Path(summary["evidence_dir"])
    lines = (evidence / "artifacts/timeline/bodyfile.txt").read_bytes().splitlines()
    names = {line.split(b"|")[1] for line in lines}
    assert b"/proc" in names and not any(n.startswith(b"/proc/") for n in names)
    assert not any(n.startswith(os.fsencode(evidence) + b"/") for n in names)  # not its output
    (row,) = [line.split(b"|") for line in lines if line.split(b"|")[1] == bytes(planted)]
    assert int(row[10]) == _birth_s(planted)  # statx's birth time, 0 where there is none
    records = journal_records(evidence)
    skipped = {r["source"]["path"]: r for r in records if r["type"] == "skipped"}
    assert skipped["/proc"]["fstype"] == "proc" and "pseudo" in skipped["/proc"]["reason"]
    (event,) = [r for r in records if r.get("event") == "timeline"]
    assert event["entries"] == len(lines) - 1  # every line but the top's
    # Alongside: the timeline runs first in the stage (order 1, persistence 40), so run one
    # after the other it would have ended before persistence began; it was still walking.
    seq = {(r["type"], r.get("collector") or r.get("name")): r["seq"] for r in records}
    assert seq[("collector", "persistence")] < seq[("collector", "timeline")]


_IN_NAMESPACE = """
import json, os, subprocess, sys
sys.path[:0] = [sys.argv[2], sys.argv[2] + "/tests"]
from conftest import _Log, new_writer
from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine
from collectors.timeline import TimelineCollector
host, out = sys.argv[1], sys.argv[3]
for kind, where in (("proc", "proc"), ("sysfs", "sys"), ("tmpfs", "shm")):
    os.makedirs(f"{host}/{where}")
    subprocess.run(["mount", "-t", kind, kind, f"{host}/{where}"], check=True)
open(f"{host}/shm/staged", "w").write("in memory")
writer = new_writer(__import__("pathlib").Path(out))
engine = CopyEngine(writer)
ctx = CollectContext(writer.root, writer.journal, engine, Options(only=("timeline",)), _Log())
collector = TimelineCollector()
collector.top = os.fsencode(host)
collector.collect(ctx)
engine.shutdown()
print(json.dumps(str(writer.root)))
"""


@requires_root
def test_pseudo_file_systems_inside_the_tree_are_listed_not_entered(tmp_path: Path) -> None:
    host, out = tmp_path / "host", tmp_path / "out"
    host.mkdir()
    out.mkdir()
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _IN_NAMESPACE,
         host, ROOT, out],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    evidence = Path(json.loads(done.stdout.splitlines()[-1]))
    names = {
        line.split("|")[1]
        for line in (evidence / "artifacts/timeline/bodyfile.txt").read_text().splitlines()
    }
    assert {f"{host}/proc", f"{host}/sys", f"{host}/shm", f"{host}/shm/staged"} <= names
    assert not [n for n in names if n.startswith((f"{host}/proc/", f"{host}/sys/"))]
    skipped = {
        r["source"]["path"]: r["fstype"]
        for r in journal_records(evidence)
        if r["type"] == "skipped" and r["collector"] == "timeline"
    }
    assert skipped[f"{host}/proc"] == "proc" and skipped[f"{host}/sys"] == "sysfs"
    assert f"{host}/shm" not in skipped  # tmpfs is where attackers stage: walked


def test_a_tree_deeper_than_path_max(tmp_path: Path) -> None:
    with scratch(tmp_path) as base:
        bottom = make_deep(base, 2500, files_at=(1, 2499))
        lines, walker, errors = _body(base)
    assert not errors and walker.entries == len(lines) == 2500 + 3
    deepest = max(lines, key=len).split(b"|")[1]
    assert deepest == os.fsencode(base) + b"/" + bottom and len(deepest) > 4096


def test_an_entry_gone_before_its_stat_is_counted_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kept").write_bytes(b"")
    listdir = os.listdir

    def listed_then_deleted(fd: int) -> list[str]:
        # The window a busy /tmp has: the name was listed, the file was then removed.
        (tmp_path / "brief").write_bytes(b"")
        names = listdir(fd)
        (tmp_path / "brief").unlink()
        return names

    monkeypatch.setattr(bodywalk.os, "listdir", listed_then_deleted)
    monkeypatch.setattr(bodywalk, "_bodylist", None)  # the C lister's: tests/test_bodylist.py
    lines, walker, errors = _body(tmp_path)
    assert [line.split(b"|")[1] for line in lines] == [bytes(tmp_path / "kept")]
    assert walker.vanished == 1 and not errors


def test_a_child_that_dies_is_an_error_not_a_short_result() -> None:
    got: list[tuple[bytes, bytes]] = []

    def dies(send: object) -> None:
        send(b"B", b"first lines")  # type: ignore[operator]
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(CollectorError, match="killed by signal 9"):
        run_forked(dies, lambda kind, data: got.append((kind, data)), lambda: False)
    assert got == [(b"B", b"first lines")]

    def raises(send: object) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(CollectorError, match="OSError: .*Input/output error"):
        run_forked(raises, lambda kind, data: None, lambda: False)


def test_a_stopped_run_kills_the_child_and_reaps_it() -> None:
    def endless(send: object) -> None:
        with open("/proc/self/stat", "rb") as f:
            send(b"P", f.read().split()[0])  # type: ignore[operator]
        while True:
            time.sleep(1)

    pids: list[int] = []
    started = time.monotonic()
    assert not run_forked(endless, lambda kind, data: pids.append(int(data)), lambda: bool(pids))
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # gone and reaped: no zombie left behind


def test_a_stopped_run_leaves_no_bodyfile(ctx: CollectContext, tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    ctx.options = Options(only=("timeline",))
    ctx.engine.stopped.set()
    collector = TimelineCollector()
    collector.top = os.fsencode(tmp_path / "host")
    collector.collect(ctx)
    assert not [p for p in ctx.root.rglob("*") if p.is_file() and "timeline" in str(p)]
    assert not [r for r in journal_records(ctx.root) if r["type"] == "artifact"]
    assert not [r for r in journal_records(ctx.root) if r.get("event") == "timeline"]
    (row,) = [value for label, value in ctx.summary if label == "Timeline"]
    assert row.startswith("stopped after") and "no bodyfile" in row


def test_what_an_alongside_collector_raised_is_raised_when_the_stage_waits() -> None:
    release = threading.Event()
    alongside = Alongside()

    def fills_the_drive() -> None:
        release.wait(10)
        raise OutputFull()

    alongside.start("filler", fills_the_drive)
    release.set()  # the stage went on meanwhile: its own work did not wait for this one
    with pytest.raises(OutputFull):
        alongside.wait()
    alongside.start("filler", fills_the_drive)
    alongside.wait(reraise=False)  # another exception is already on its way: no second
