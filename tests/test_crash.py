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


def _stop(proc: subprocess.Popen, signals: list[tuple[float, signal.Signals]]) -> bytes:
    """Send each signal after its delay (seconds after the previous one); the run's stderr."""
    for delay, sig in signals:
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return err


def _start(src: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*PRESERVE_ARGV, "-o", out, "--only", "files", "--path", src],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _dirty_source(tmp_path: Path) -> Path:
    """Small files, then 1 GiB of real (non-zero) bytes: the copy leaves a lot for the
    seal's flush to write, so sealing takes long enough to be hit by a second signal."""
    src = tmp_path / "dirty"
    src.mkdir()
    for n in range(SMALL_FILES):
        (src / f"small-{n:02d}.log").write_text(f"line {n}\n" * 50)
    block = b"\x5a" * (1024 * 1024)
    with open(src / "zz-big.bin", "wb") as f:
        for _ in range(1024):
            f.write(block)
    return src


def test_a_second_signal_while_sealing_does_not_lose_the_seal(tmp_path: Path) -> None:
    """The responder presses Ctrl-C again (or a supervisor resends SIGTERM) 20-100 ms
    after the first: the run still seals everything, verify passes and says it was
    interrupted."""
    src = _dirty_source(tmp_path)
    held = 0
    for n, (first, second, gap) in enumerate(
        [
            (signal.SIGTERM, signal.SIGTERM, 0.02),
            (signal.SIGINT, signal.SIGINT, 0.05),
            (signal.SIGHUP, signal.SIGTERM, 0.1),
        ]
    ):
        out = tmp_path / f"out{n}"
        proc = _start(src, out)
        _wait_for_artifacts(out, SMALL_FILES)
        err = _stop(proc, [(0.1, first), (gap, second)])
        held += b"still sealing" in err
        # Exit 1 (interrupted); or killed by the second signal only after the last line
        # was printed, when nothing was left to protect.
        assert proc.returncode == 1 or b"Chain head" in err, err.decode()
        [evidence] = out.iterdir()
        result = verify(evidence)
        text = result.stdout.decode()
        assert result.returncode == 0, text
        assert f"collection interrupted by {first.name}" in text, text
    assert held, "no second signal arrived while the run was sealing"


def _wait_for_artifacts(out: Path, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = list(out.glob("*/custody.jsonl")) if out.exists() else []
        if found and found[0].read_bytes().count(b'"type":"artifact"') >= count:
            return
        time.sleep(0.01)
    raise AssertionError("collection never got to the big file")


def test_a_third_signal_aborts_and_says_so(tmp_path: Path) -> None:
    src = _slow_source(tmp_path, 64 * 1024**3)
    proc, journal = _start_mid_copy(src, tmp_path / "out", "--json")
    proc.stderr = None
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode in (1, 130)  # it may have sealed before the third arrived
    result = verify(journal.parent, "--json")
    report = json.loads(result.stdout)
    assert report["sealed_through_seq"] is not None
    assert not any("chain broken" in p or "bad signature" in p for p in report["problems"])


def test_a_signal_at_any_moment_ends_in_evidence_that_verifies(tmp_path: Path) -> None:
    """Stop signals from the first milliseconds to the end of a short run, each followed
    by a second one: every evidence directory that exists verifies. (Before the tool has
    made its directory a signal simply ends the process: nothing is left behind.)"""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(300):
        (src / f"f{n:03d}").write_bytes(b"x" * 4096)
    delays = [0.0, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3]
    for n, delay in enumerate(delays):
        out = tmp_path / f"out{n}"
        proc = _start(src, out)
        err = _stop(proc, [(delay, signal.SIGTERM), (0.03, signal.SIGTERM)])
        assert b"Traceback" not in err, err
        for evidence in out.glob("*") if out.exists() else []:
            result = verify(evidence)
            assert result.returncode == 0, (delay, result.stdout.decode(), err)
