"""Interrupted runs: SIGKILL leaves a verifiable sealed prefix; SIGTERM stops and seals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import PRESERVE_ARGV, ROOT, verify

SMALL_FILES = 40


def _slow_source(tmp_path: Path, size: int) -> Path:
    """Small logs, then one sparse file that takes long to hash: the copy is mid-way."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(SMALL_FILES):
        (src / f"small-{n:02d}.log").write_text(f"line {n}\n" * 50)
    with open(src / "zz-slow.img", "wb") as f:
        f.truncate(size)
    return src


def _start_mid_copy(src: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """Start a collection and return once the small files are journalled."""
    proc = subprocess.Popen(
        [
            *PRESERVE_ARGV,
            *extra,
            "-o",
            out,
            "--only",
            "files",
            "--path",
            src,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = list(out.glob("*/custody.jsonl")) if out.exists() else []
        if found and found[0].read_bytes().count(b'"type":"artifact"') >= SMALL_FILES:
            assert proc.poll() is None, "the slow source finished before the test could act"
            return proc, found[0]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("collection never got to the slow source")


def test_sigkill_mid_copy_leaves_a_verifiable_sealed_prefix(tmp_path: Path) -> None:
    src = _slow_source(tmp_path, 16 * 1024**3)
    proc, journal = _start_mid_copy(src, tmp_path / "out")
    try:
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    evidence = journal.parent
    records = [json.loads(line) for line in journal.read_bytes().splitlines()]
    assert not any(r["type"] == "end" for r in records)
    result = verify(evidence, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["sealed_through_seq"] is not None and report["sealed_through_seq"] >= 1
    assert any(p.startswith("unsealed tail after seq") for p in report["problems"])
    assert any("did not finish" in p for p in report["problems"])
    assert not any("chain broken" in p or "bad signature" in p for p in report["problems"])
    # Each artifact recorded before the kill is still intact on disk.
    assert report["files"]["ok"] >= SMALL_FILES
    changed = [f for f in report["files"]["problems"] if f["status"] in ("changed", "missing")]
    assert changed == []
    text = verify(evidence).stdout.decode()
    assert "unsealed tail" in text


def test_sigterm_mid_copy_stops_promptly_and_seals_everything(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) while a huge file is being copied: the copy stops at the next
    chunk instead of holding up the seal, the run closes the directory and verify passes."""
    src = _slow_source(tmp_path, 64 * 1024**3)  # minutes to hash unless stopped early
    proc, _ = _start_mid_copy(src, tmp_path / "out", "--json")
    try:
        time.sleep(0.3)  # well inside the 64 GiB copy
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=30)
        took = time.monotonic() - stopped_at
    finally:
        proc.kill()
        proc.wait()
    assert took < 10, f"took {took:.1f} s to stop"
    assert proc.returncode == 1
    summary = json.loads(stdout)
    assert summary["status"] == "interrupted"
    evidence = Path(summary["evidence_dir"])
    records = [json.loads(line) for line in (evidence / "custody.jsonl").read_bytes().splitlines()]
    reasons = [r["reason"] for r in records if r["type"] == "error"]
    assert any(r.startswith("copy interrupted after") for r in reasons), reasons
    assert any("collection interrupted (SIGTERM)" in r for r in reasons), reasons
    assert records[-1]["type"] == "seal"
    result = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert result.returncode == 0, result.stdout.decode()
