"""End to end: collect a small tree, verify it, hand it over."""

from __future__ import annotations

from pathlib import Path

from conftest import collect_json, journal_records, preserve, verify


def test_collect_then_verify(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.log").write_text("line 1\n")
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    assert summary["status"] == "complete"
    assert (evidence / "artifacts/files" / str(src).lstrip("/") / "a.log").read_text() == "line 1\n"
    records = journal_records(evidence)
    assert records[0]["type"] == "start" and records[-1]["type"] == "seal"
    result = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert result.returncode == 0, result.stdout.decode()
    assert b"OK:" in result.stdout


def test_missing_output_is_a_usage_error(tmp_path: Path) -> None:
    result = preserve("--only", "files", "--path", tmp_path)
    assert result.returncode == 2
    assert b"-o" in result.stderr
