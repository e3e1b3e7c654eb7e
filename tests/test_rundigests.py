"""The SHA-256 that ``packages`` takes from its read of a package executable, handed to
``executables`` in the same run: the same digest as hashlib, and never the old one for a
file changed between the two (same size, modification time put back: only its change
time tells), nor for a file that changed less than a second before it was read."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from test_packages import _db

from collectors.context import CollectContext, Options
from collectors.executables import ExecutablesCollector
from collectors.packages import PackagesCollector
from collectors.rundigests import KEY, RunDigests


def test_executables_reuse_the_package_pass_digest_only_while_unchanged(
    ctx: CollectContext, tmp_path: Path
) -> None:
    root = tmp_path / "host"
    files = {"/usr/bin/tool": b"tool v1", "/usr/bin/other": b"other v1",
             "/usr/lib/libx.so.1": b"library", "/usr/share/doc/x": b"doc"}  # fmt: skip
    _db(root, "x", files, {})
    for path, data in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(data)
    os.chmod(root / "usr/bin/tool", 0o755)
    os.chmod(root / "usr/bin/other", 0o755)
    time.sleep(1.1)  # settled: old enough to be handed on
    ctx.options = Options(only=("packages", "executables"))
    for cls in (PackagesCollector, ExecutablesCollector):
        cls.root = os.fsencode(root)
    try:
        PackagesCollector().collect(ctx)
        table = ctx.shared[KEY]
        assert isinstance(table, RunDigests) and len(table) == 3  # not the doc
        other = root / "usr/bin/other"
        before = other.stat()
        other.write_bytes(b"other v2")  # same size
        os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
        ExecutablesCollector().collect(ctx)
    finally:
        for cls in (PackagesCollector, ExecutablesCollector):
            cls.root = b"/"
    assert KEY not in ctx.shared
    lines = (ctx.root / "artifacts/executables/sha256.jsonl").read_text().splitlines()
    rows = {r["path"]: r["sha256"] for r in map(json.loads, lines)}
    assert rows == {
        f"{root}/usr/bin/tool": hashlib.sha256(b"tool v1").hexdigest(),
        f"{root}/usr/bin/other": hashlib.sha256(b"other v2").hexdigest(),
        f"{root}/usr/lib/libx.so.1": hashlib.sha256(b"library").hexdigest(),
    }


def test_a_file_changed_under_a_second_ago_is_not_handed_on(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"just written")
    table = RunDigests("sha256")
    table.put(fresh.stat(), hashlib.sha256(b"just written").hexdigest())
    assert len(table) == 0


def test_take_checks_the_stamp_and_drops_the_entry(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"a")
    old = time.time_ns() - 10**10
    os.utime(f, ns=(old, old))
    time.sleep(1.1)
    st = f.stat()
    table = RunDigests("sha256")
    table.put(st, "ab" * 32)
    assert table.take(st) == "ab" * 32 and len(table) == 0
    table.put(st, "ab" * 32)
    f.write_bytes(b"b")
    os.utime(f, ns=(old, old))
    assert table.take(f.stat()) is None
