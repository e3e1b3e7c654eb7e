"""SHA256SUMS from memory: the journal keeps each artifact's line as it is journaled (up
to ``KEPT_SUMS``), so closing a run of 20,000 small files no longer reads its own journal
back. The kept lines are byte for byte those the read-back makes, odd names included; a
real run closes without reading back and its SHA256SUMS checks; past the limit nothing
is kept and the read-back makes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, verify
from evidence_factory import new_writer

from manifests import journal


def _tree(src: Path) -> None:
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for n in range(40):
            (src / f"d{d}" / f"f{n}.log").write_bytes(b"x" * n)
    (src / "d0" / "new\nline").write_bytes(b"odd")
    (src / "d0" / "back\\slash").write_bytes(b"odd")


def _collect(tmp_path: Path, label: str, patch: str) -> bytes:
    """Collect the tree with ``patch`` applied in the child first; SHA256SUMS's bytes."""
    out = tmp_path / f"out-{label}"
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
{patch}
sys.argv = ["preserve", "-q", "-o", {str(out)!r}, "--only", "files", "--path",
            {str(tmp_path / "src")!r}]
from agent._cli import main
main()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
    evidence = next(out.iterdir())
    assert verify(evidence).returncode == 0
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=evidence)
    assert check.returncode == 0
    return (evidence / "SHA256SUMS").read_bytes()


def test_a_run_closes_without_reading_its_journal_back_and_its_sums_check(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    no_read_back = """
from manifests import writer
def refuse(*a, **k):
    raise AssertionError("the journal was read back")
writer.records_of = refuse
"""
    kept = _collect(tmp_path, "kept", no_read_back)
    read_back = _collect(tmp_path, "read", "from manifests import journal\njournal.KEPT_SUMS = 300")
    assert b"new%0Aline" in kept and b"back%5Cslash" in kept

    # The same files' lines (their order follows the copy workers; the run log differs).
    def files(sums: bytes) -> list[bytes]:
        return sorted(line for line in sums.splitlines() if b" artifacts/files/" in line)

    assert len(files(kept)) == 122
    assert files(kept) == files(read_back)


def test_kept_lines_equal_the_read_back_of_the_same_journal(tmp_path: Path) -> None:
    """One journal, both ways: the kept bytes are the read-back's, byte for byte."""
    writer = new_writer(tmp_path)
    try:
        for n, name in enumerate(["a", "new\nline", "back\\slash", "ü", *map(str, range(50))]):
            writer.journal.append("artifact", path=f"artifacts/x/{name}", sha256=f"{n:064x}")
            writer.journal.append("skipped", reason="not a file")
        kept = writer.journal.kept_sums()
        assert kept is not None
        pieces = list(writer._sums_read_back())
        assert kept == (b"".join(p for p, _ in pieces), sum(n for _, n in pieces))
        assert kept[1] == 54
    finally:
        writer.abandon()


def test_past_the_limit_nothing_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "KEPT_SUMS", 500)
    writer = new_writer(tmp_path)
    try:
        for n in range(10):
            writer.journal.append("artifact", path=f"artifacts/{n}", sha256=f"{n:064x}")
        assert writer.journal.kept_sums() is None
        assert writer.journal.sums_size == sum(len(f"{n:064x}  artifacts/{n}\n") for n in range(10))
    finally:
        writer.abandon()
