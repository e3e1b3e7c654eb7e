"""Interrupted runs: SIGKILL leaves a verifiable sealed prefix; SIGTERM stops and seals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PRESERVE_ARGV, ROOT, verify

SMALL_FILES = 40


def _slow_source(tmp_path: Path, size: int, subdir: str = "") -> Path:
    """Small logs, then one sparse file that takes long to hash: the copy is mid-way."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(SMALL_FILES):
        (src / f"small-{n:02d}.log").write_text(f"line {n}\n" * 50)
    (src / subdir).mkdir(parents=True, exist_ok=True)
    with open(src / subdir / "zz-slow.img", "wb") as f:
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
    # Each artifact recorded before the kill is still intact on disk: ok where a seal
    # covers its record, 'unsealed' (matching, but no signature vouches) after the last.
    unsealed = [f for f in report["files"]["problems"] if f["status"] == "unsealed"]
    assert all(
        int(f["detail"].split("seq ")[1].split(")")[0]) > report["sealed_through_seq"]
        for f in unsealed
    ), unsealed
    assert report["files"]["ok"] + len(unsealed) >= SMALL_FILES
    changed = [f for f in report["files"]["problems"] if f["status"] in ("changed", "missing")]
    assert changed == []
    # The copy cut short is named for what it is, never 'unexpected' like a planted file.
    problems = report["files"]["problems"]
    assert not [f for f in problems if f["status"] == "unexpected"], problems
    [partial] = [f for f in problems if f["path"].endswith("zz-slow.img%part")]
    assert partial["status"] == "incomplete"
    assert partial["detail"].startswith("incomplete copy from a killed run")
    text = verify(evidence).stdout.decode()
    assert "unsealed tail" in text
    assert "FAIL incomplete:" in text and "incomplete copy from a killed run" in text


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


def test_interrupted_copy_leaves_no_empty_directory_behind(tmp_path: Path) -> None:
    """Ctrl-C while the only file of a directory is being copied: the partial copy and
    the directories made for it are removed, so the sealed evidence verifies."""
    src = _slow_source(tmp_path, 64 * 1024**3, subdir="zz-disk/images")
    proc, journal = _start_mid_copy(src, tmp_path / "out")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 1
    evidence = journal.parent
    result = verify(evidence)
    assert result.returncode == 0, result.stdout.decode()
    assert not list(evidence.rglob("zz-disk")), "the empty directory was left behind"
    assert not list(evidence.rglob("*%part"))


class OwnMount:
    """A collection onto a small ext4 image mounted in a private mount namespace of its
    own (the machine's mounts are never touched), so the test can freeze the output file
    system under the run (``fsfreeze``) and hold the seal for as long as it needs. A shell
    keeps the namespace (and the frozen file system) alive until the test thaws it."""

    def __init__(self, tmp_path: Path, src: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root to mount the output image (CI runs as root)")
        tmp_path.mkdir(parents=True, exist_ok=True)
        image, self.mnt = tmp_path / "out.img", tmp_path / "mnt"
        self.mnt.mkdir()
        self.rc_file, pid_file = tmp_path / "rc", tmp_path / "pid"
        subprocess.run(["truncate", "-s", "256M", image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
        argv = " ".join(f"'{a}'" for a in [*PRESERVE_ARGV, "-o", f"{self.mnt}/out"])
        script = (
            f"mount -o loop '{image}' '{self.mnt}' || exit 9; "
            f"{argv} --only files --path '{src}' & echo $! > '{pid_file}'; "
            f"wait $!; echo $? > '{self.rc_file}'; exec sleep 600"
        )
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = Path(f"/proc/{self.holder.pid}/root{self.mnt}/out")
            found = list(out.glob("*/custody.jsonl")) if out.is_dir() else []
            if found and found[0].read_bytes().count(b'"type":"artifact"') >= SMALL_FILES:
                self.pid = int(pid_file.read_text())
                self.evidence_in_ns = found[0].parent
                return
            if self.holder.poll() is not None:
                pytest.skip(f"cannot mount an image here: {self.holder.stderr.read()[:200]!r}")
            time.sleep(0.02)
        self.holder.kill()
        raise AssertionError("collection never got to the slow source")

    def freeze(self, frozen: bool) -> None:
        flag = "-f" if frozen else "-u"
        argv = ["nsenter", "-t", str(self.holder.pid), "-m", "fsfreeze", flag, str(self.mnt)]
        subprocess.run(argv, check=True, timeout=30)

    def finish(self, keep: Path) -> tuple[int, bytes]:
        """Wait for the run, copy its evidence out of the namespace, end the namespace."""
        deadline = time.monotonic() + 60
        while not self.rc_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.copytree(self.evidence_in_ns, keep, symlinks=True)
        self.holder.kill()
        _, err = self.holder.communicate(timeout=30)
        return int(self.rc_file.read_text()), err


def test_a_second_signal_while_sealing_does_not_lose_the_seal(tmp_path: Path) -> None:
    """The responder presses Ctrl-C again (or a supervisor resends SIGTERM) while the run
    seals: the run still seals everything, verify passes and says it was interrupted."""
    src = _slow_source(tmp_path, 64 * 1024**3)
    for first, second in [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGHUP)]:
        run = OwnMount(tmp_path / first.name, src)
        run.freeze(True)  # every write, and so the seal, now waits until the test thaws it
        os.kill(run.pid, first)
        try:
            time.sleep(0.3)
            os.kill(run.pid, second)
            time.sleep(0.3)
        finally:
            run.freeze(False)
        evidence = tmp_path / first.name / "evidence"
        rc, err = run.finish(evidence)
        assert rc == 1, err.decode()
        assert f"{second.name} received: still stopping and sealing".encode() in err, err.decode()
        result = verify(evidence)
        text = result.stdout.decode()
        assert result.returncode == 0, text
        assert f"collection interrupted by {first.name}" in text, text


def test_a_third_signal_while_sealing_aborts_and_says_so(tmp_path: Path) -> None:
    src = _slow_source(tmp_path, 64 * 1024**3)
    run = OwnMount(tmp_path / "run", src)
    run.freeze(True)
    os.kill(run.pid, signal.SIGTERM)
    try:
        for _ in range(2):
            time.sleep(0.3)
            os.kill(run.pid, signal.SIGINT)
        time.sleep(0.3)
    finally:
        run.freeze(False)
    rc, err = run.finish(tmp_path / "evidence")
    assert rc == 130, err.decode()
    assert b"received a third time: aborted" in err, err.decode()
    report = json.loads(verify(tmp_path / "evidence", "--json").stdout)
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
