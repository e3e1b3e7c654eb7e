"""pacct and locate at a busy server's scale, read by the collectors themselves (the
planted host of tests/test_host_trails.py has five accounting records and a handful of
names): what the standard profile writes of 12,000 records, and the block-at-a-time
reading of a locate database against the name-at-a-time one.

The records are ones the kernel wrote (``acct(2)`` in a private namespace), repeated; the
database is one ``updatedb`` wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import journal_records
from evidence_factory import new_writer
from test_host_trails import ROOT_ONLY, kernel_pacct

from collectors import locatedb, pacctfile
from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine
from collectors.factfilter import FactFilter
from collectors.locate import LocateCollector
from collectors.pacct import ROWS, PacctCollector
from collectors.persistkinds import WRITABLE_PREFIXES
from collectors.ruleset import load_rules


class _Log:
    def info(self, *a: object, **k: object) -> None: ...

    warning = info


def _collect(
    collector: PacctCollector | LocateCollector, out: Path
) -> tuple[Path, list[dict], dict[str, str]]:
    """Run one collector into a new evidence directory: its root, its journal and its
    rows of the closing box."""
    writer = new_writer(out)
    engine = CopyEngine(writer)
    ctx = CollectContext(writer.root, writer.journal, engine, Options(), log=_Log())
    try:
        collector.collect(ctx)
    finally:
        engine.shutdown()
        writer.journal.close()
    box = dict(ctx.summary.to_json())
    return writer.root, journal_records(writer.root), box


@ROOT_ONLY
def test_the_standard_profile_writes_the_newest_rows_and_every_one_a_rule_fired_on(
    tmp_path: Path,
) -> None:
    kernel = kernel_pacct(tmp_path).read_bytes()
    size = pacctfile.SIZE
    by_command = {r["command"]: o for o, r in pacctfile.records(kernel) if r}
    ncat = kernel[by_command["ncat"] : by_command["ncat"] + size]
    others = b"".join(kernel[o : o + size] for c, o in by_command.items() if c != "ncat")
    n = 12_000
    data = bytearray((others * (n // 4 + 1))[: n * size])
    data[10 * size : 11 * size] = ncat  # old: far outside the newest ROWS
    host = tmp_path / "host"
    (host / "var/log/account").mkdir(parents=True)
    (host / "var/log/account/pacct").write_bytes(data)
    (host / "etc").mkdir()
    shutil.copy("/etc/passwd", host / "etc/passwd")
    collector = PacctCollector()
    collector.root = os.fsencode(host)
    evidence, records, _ = _collect(collector, tmp_path / "out")

    rel = "artifacts/pacct/var/log/account/pacct.jsonl"
    lines = (evidence / rel).read_text().splitlines()
    assert len(lines) == ROWS + 1
    rows = [json.loads(line) for line in lines]
    assert rows[0]["offset"] == 10 * size and rows[0]["command"] == "ncat"
    assert [r["offset"] for r in rows[1:]] == [i * size for i in range(n - ROWS, n)]
    # Each line is exactly what json.dumps of the decoded record wrote before.
    for line, r in zip(lines, rows, strict=True):
        rec = pacctfile.decode(bytes(data), r["offset"])
        assert rec is not None
        assert line == json.dumps({"offset": r["offset"], **rec, "user": r["user"]}, sort_keys=True)
    [skip] = [r for r in records if r["type"] == "skipped" and "older records" in r["reason"]]
    assert skip["records"] == n - ROWS - 1
    [finding] = [r for r in records if r.get("rule") == "pacct-intrusion-tool"]
    assert finding["command"] == "ncat" and finding["artifact"] == rel
    assert (evidence / "artifacts/pacct/var/log/account/pacct").read_bytes() == bytes(data)


def test_the_rule_filter_tells_true_from_one() -> None:
    """The filter remembers its verdict by the values of the fields the rules read; a
    ``True`` must not stand for a ``1`` (the rules tell them apart)."""
    judge = FactFilter(load_rules(), "locate-name")
    assert judge.fields == ("exists", "writable_dir")
    assert judge.may_hold({"exists": False, "writable_dir": True})
    assert not judge.may_hold({"exists": 0, "writable_dir": 1})
    assert judge.may_hold({"exists": [False], "writable_dir": True})  # a list: judged as is


@ROOT_ONLY
@pytest.mark.skipif(not shutil.which("updatedb"), reason="needs plocate (updatedb)")
def test_locate_read_a_block_at_a_time_finds_what_name_by_name_finds(tmp_path: Path) -> None:
    """A database of a tree under /tmp (a world-writable directory) read on a host where
    none of it exists: every name is a staged file gone, counted and listed as the
    name-at-a-time reading has them, among blocks without any."""
    assert str(tmp_path).startswith("/tmp/"), "the names must be in a staged directory"
    tree = tmp_path / "tree"
    for d in range(5):
        for i in range(70):
            (tree / f"d{d}").mkdir(parents=True, exist_ok=True)
            (tree / f"d{d}" / f"f{i:03}").touch()
    host = tmp_path / "host"
    (host / "var/lib/plocate").mkdir(parents=True)
    db = host / "var/lib/plocate/plocate.db"
    subprocess.run(["updatedb", "-U", str(tree), "-o", str(db), "-l", "no", "--prunepaths", "",
                    "--prunefs", "", "--prunenames", ""], check=True)  # fmt: skip
    names = list(locatedb.names(db.read_bytes()))
    joined = b"\0".join(locatedb.blocks(db.read_bytes())).split(b"\0")
    assert joined == names and len(names) > 350
    collector = LocateCollector()
    collector.root = os.fsencode(host)
    evidence, records, box = _collect(collector, tmp_path / "out")
    staged = tuple(p.encode() for p in WRITABLE_PREFIXES)
    expected = [n for n in names if n.startswith(staged)]
    gone = (evidence / "artifacts/locate/plocate.db.gone-staged.txt").read_bytes()
    assert gone.splitlines() == expected
    assert f"{len(names):,} names, {len(expected)} staged files gone" in box["Locate databases"]
    findings = [r for r in records if r.get("event") == "finding"]
    assert len(findings) == min(len(expected), 200)  # past the cap: counted, not quoted
