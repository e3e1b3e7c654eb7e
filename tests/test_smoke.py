"""End to end: collect a small tree, verify it, hand it over."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import collect_json, journal_records, preserve, verify
from hostns import run_on_planted_host


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


def test_output_inside_a_collected_tree_is_refused(tmp_path: Path) -> None:
    result = preserve("-o", tmp_path / "src" / "out", "--only", "files", "--path", tmp_path)
    assert result.returncode == 2
    assert b"inside" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "src").exists()


def test_unknown_collector_lists_the_known_ones(tmp_path: Path) -> None:
    result = preserve("-o", tmp_path / "out", "--only", "nosuch")
    assert result.returncode == 2
    assert b"unknown collector" in result.stderr and b"files" in result.stderr


def test_default_run_preserves_standard_logs_and_reads_the_whole_host(tmp_path: Path) -> None:
    # This machine's own /etc, /var/log, /usr and packages; /tmp, /var/tmp and /dev/shm
    # empty, as a server's are, not the gigabytes other jobs leave on a shared test
    # machine (the executables collector hashes each file there whole).
    started = time.monotonic()
    summary, evidence = run_on_planted_host(tmp_path, "", "--max-file-size", "64M")
    took = time.monotonic() - started
    records = journal_records(evidence)
    stored = [
        r["source"]["path"] for r in records if r["type"] == "artifact" and r["collector"] == "logs"
    ]
    assert any(p.startswith("/var/log/") for p in stored)
    # The default profile (standard) has the timeline, package integrity and executables.
    kinds = {r.get("kind") for r in records if r["type"] == "artifact"}
    assert {"bodyfile", "package-integrity", "executable-hashes"} <= kinds, kinds
    assert took < 120, f"the default run took {took:.0f} s"
    assert verify(evidence).returncode == 0
