"""``packages`` digesting in forked children (collectors/pkgforked.py) ends with what the
digest in its own thread gives on the same tree: the integrity report byte for byte,
the findings, the summary and the SHA-256 table handed to ``executables``; a child
killed by a signal fails the collector (no report stored), never a short result."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _Log, journal_records
from evidence_factory import new_writer
from test_packages import _db

import collectors.packages as packages
import collectors.pkgforked as pkgforked
from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine
from collectors.errors import CollectorError
from collectors.lanedigest import md5_engine
from collectors.rundigests import KEY, RunDigests

pytestmark = pytest.mark.skipif(
    not pkgforked.usable(md5_engine()), reason="no fork, one core or no MD5 lanes here"
)
OUT = "artifacts/packages/integrity.json"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Packaged executables, libraries and data (some modified, missing, replaced by a
    symlink or a directory), changed and unchanged conffiles, files dpkg excludes."""
    root = tmp_path_factory.mktemp("forked") / "host"
    files = {f"/usr/bin/tool{n}": f"tool {n}".encode() for n in range(300)}
    files |= {f"/usr/lib/libx{n}.so.1": f"lib {n}".encode() * 50 for n in range(200)}
    files |= {f"/usr/share/x/data{n}": os.urandom(n * 37) for n in range(300)}
    files |= {f"/usr/share/doc/x/doc{n}": b"doc" for n in range(20)}
    files["/usr/share/big.dat"] = os.urandom(3 << 20)
    conffiles = {f"/etc/x/conf{n}": f"conf {n}\n".encode() for n in range(20)}
    _db(root, "base", files, conffiles)
    for path, data in {**files, **conffiles}.items():
        if "/doc/" in path:
            continue
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(data)
        if path.startswith("/usr/bin/"):
            os.chmod(root / path.lstrip("/"), 0o755)
    for n in range(0, 300, 50):
        (root / f"usr/bin/tool{n}").write_bytes(b"trojan")  # modified executables
        (root / f"usr/share/x/data{n + 1}").unlink()  # missing
    (root / "usr/lib/libx7.so.1").write_bytes(b"trojan lib")
    (root / "usr/bin/tool3").unlink()
    (root / "usr/bin/tool3").symlink_to("tool4")  # not regular
    (root / "usr/share/x/data5").unlink()
    (root / "usr/share/x/data5").mkdir()
    (root / "etc/x/conf3").write_text("edited\n")
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
    (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text("path-exclude=/usr/share/doc/*\n")
    time.sleep(1.1)  # settled: old enough for the digests to be handed on
    return root


def _run(tmp: Path, root: Path) -> tuple[bytes, Any, list[tuple[str, str]], dict[Any, bytes]]:
    """One packages collection (with ``executables`` in the run, so the SHA-256 table
    is filled) over ``root``: its report, findings, summary and table."""
    writer = new_writer(tmp)
    engine = CopyEngine(writer)
    ctx = CollectContext(writer.root, writer.journal, engine, Options(), log=_Log())
    ctx.options = Options(only=("packages", "executables"))
    try:
        collector = packages.PackagesCollector()
        collector.root = os.fsencode(root)
        collector.collect(ctx)
        table = ctx.shared[KEY]
        assert isinstance(table, RunDigests) and table.finished()
        report = (writer.root / OUT).read_bytes()
        findings = sorted(
            (f["rule"], f["severity"], f["source"]["path"])
            for f in journal_records(writer.root)
            if f.get("event") == "finding"
        )
        return report, findings, list(ctx.summary), dict(table._by_inode)
    finally:
        engine.shutdown()
        writer.journal.close()


def test_children_give_what_the_thread_gives(
    host: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forks: list[int] = []
    real = pkgforked.run_forked_all

    def counted(works: Any, *args: Any) -> bool:
        forks.append(len(works))
        return real(works, *args)

    monkeypatch.setattr(pkgforked, "run_forked_all", counted)
    forked = _run(tmp_path / "forked", host)
    assert forks == [pkgforked.children()]
    monkeypatch.setattr(packages, "usable", lambda engine: False)
    threaded = _run(tmp_path / "thread", host)
    assert forks == [pkgforked.children()]  # the second run digested in its thread
    assert forked[0] == threaded[0]
    assert forked[1] == threaded[1] and len(forked[1]) == 7  # 6 tools, 1 library
    assert forked[2] == threaded[2]
    assert forked[3] == threaded[3] and len(forked[3]) > 450  # executables and libraries


def test_a_child_killed_by_a_signal_fails_the_collector(
    host: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pkgforked.digest_files

    def dies(items: Any, *args: Any, **kw: Any) -> Iterator[Any]:
        items = list(items)
        first = any(tag[0] == b"/usr/bin/tool0" for tag, _ in items)
        for n, result in enumerate(real(items, *args, **kw)):
            yield result
            if first and n == 100:  # one child only, part way
                os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(pkgforked, "digest_files", dies)
    with pytest.raises(CollectorError, match="killed by signal 9"):
        _run(tmp_path, host)
    assert not (tmp_path / OUT).exists()
    assert not list(tmp_path.rglob("integrity.json"))
