"""Hostile sources: the collector records them and never follows, blocks or overreads."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    IS_ROOT,
    PRESERVE_ARGV,
    PRESERVE_CODE,
    collect_json,
    journal_records,
    preserve,
    verify,
)
from evidence_factory import new_writer

from collectors.copy import CopyEngine


def by_source(records: list[dict], path: Path | bytes) -> list[dict]:
    raw = os.fsencode(path)
    out = []
    for r in records:
        src = r.get("source") or {}
        got = (
            base64.b64decode(src["path_b64"]) if "path_b64" in src else src.get("path", "").encode()
        )
        if got == raw:
            out.append(r)
    return out


def test_symlinks_fifos_and_devices_are_recorded_not_read(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "shadow").symlink_to("/etc/shadow")
    (src / "zero").symlink_to("/dev/zero")
    (src / "loop").symlink_to(src / "loop")
    (src / "dirlink").symlink_to("/etc")
    os.mkfifo(src / "pipe.log")
    (src / "real.txt").write_text("real\n")
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src, timeout=60)
    records = journal_records(Path(summary["evidence_dir"]))
    for name in ("shadow", "zero", "loop", "dirlink"):
        [rec] = by_source(records, src / name)
        assert rec["type"] == "skipped" and rec["reason"].startswith("symlink")
    [shadow] = by_source(records, src / "shadow")
    assert shadow["target"]["path"] == "/etc/shadow"
    [fifo] = by_source(records, src / "pipe.log")
    assert fifo["type"] == "skipped" and fifo["reason"].startswith("fifo")
    stored = [r["path"] for r in records if r["type"] == "artifact"]
    assert not any("shadow" in p or "zero" in p for p in stored)
    assert summary["counts"]["skipped"] == 5 and summary["exit_code"] == 0


def test_device_given_directly_is_skipped(tmp_path: Path) -> None:
    summary = collect_json(
        tmp_path / "out",
        "--only",
        "files",
        "--path",
        "/dev/zero",
        "--path",
        "/dev/null",
        timeout=30,
    )
    records = journal_records(Path(summary["evidence_dir"]))
    reasons = [r["reason"] for r in records if r["type"] == "skipped"]
    assert reasons == ["character device: not read"] * 2


def test_odd_names_are_kept_losslessly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = [
        b"new\nline",
        b"bad\xff\xfebytes",
        b"-leading-dash",
        b"..dots",
        b"percent%41",
        b"back\\slash",
        "日本語.log".encode(),
    ]
    for name in names:
        with open(os.fsencode(src) + b"/" + name, "wb") as f:
            f.write(name)
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    records = journal_records(evidence)
    for name in names:
        [rec] = by_source(records, os.fsencode(src) + b"/" + name)
        stored = evidence / rec["path"]
        assert stored.resolve().is_relative_to(evidence / "artifacts")
        assert stored.read_bytes() == name
    assert verify(evidence).returncode == 0


def test_unreadable_file_is_an_error_and_the_run_goes_on(tmp_path: Path) -> None:
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp", prefix="preserve-unreadable-"))
    tmp_path.chmod(0o755)  # pytest's own tmp root is 0700: nobody could not enter it
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret").write_text("no\n")
    (src / "secret").chmod(0o000)
    (src / "fine").write_text("yes\n")
    out = tmp_path / "out"
    env = {}
    args: list[str] = []
    if IS_ROOT:  # root reads everything: drop to nobody for this run
        src.chmod(0o755)
        out.mkdir()
        os.chown(out, 65534, 65534)
        args = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result = subprocess.run(
        [
            *args,
            *PRESERVE_ARGV,
            "-o",
            out,
            "--only",
            "files",
            "--path",
            src,
        ],
        capture_output=True,
        cwd=Path(__file__).parent.parent,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", **env},
        timeout=60,
    )
    assert result.returncode == 1, result.stderr.decode()
    assert b"Permission denied" in result.stderr  # told on the terminal, one line
    evidence = next(out.iterdir())
    records = journal_records(evidence)
    [err] = by_source(records, src / "secret")
    assert err["type"] == "error" and "Permission denied" in err["reason"]
    [ok] = by_source(records, src / "fine")
    assert ok["type"] == "artifact"
    assert verify(evidence).returncode == 0
    shutil.rmtree(tmp_path)


def test_growing_file_is_cut_at_the_size_seen_at_open(tmp_path: Path) -> None:
    """Engine-level: append while the copy runs; the record says so and the hash is of
    exactly the stored bytes."""
    writer = new_writer(tmp_path, "ev")
    evidence, journal = writer.root, writer.journal
    engine = CopyEngine(writer)
    log = tmp_path / "growing.log"
    log.write_bytes(b"x" * (64 * 1024 * 1024))
    stop = threading.Event()

    def writer() -> None:
        with open(log, "ab") as f:
            while not stop.is_set():
                f.write(b"more\n")
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.05)
        record = engine.preserve(os.fsencode(log), "artifacts/files/growing.log", "files")
    finally:
        stop.set()
        t.join()
        journal.close()
    assert record is not None
    stored = (evidence / record["path"]).read_bytes()
    import hashlib

    assert record["size"] == len(stored) == record["size_at_open"]
    assert record["sha256"] == hashlib.sha256(stored).hexdigest()
    assert record["grew"] is True and record["changed_during_read"] is True
    assert record["size_after"] > record["size_at_open"]


def test_file_removed_between_listing_and_copy(tmp_path: Path) -> None:
    writer = new_writer(tmp_path, "ev")
    evidence, journal = writer.root, writer.journal
    engine = CopyEngine(writer)
    gone = tmp_path / "gone.log"
    gone.write_text("soon deleted\n")
    listed = os.fsencode(gone)
    gone.unlink()  # the intruder (or logrotate) removes it after the walk listed it
    assert engine.preserve(listed, "artifacts/files/gone.log", "files") is None
    journal.close()
    [err] = [r for r in journal_records(evidence) if r["type"] == "error"]
    assert err["reason"] == "vanished before it could be read"
    assert not (evidence / "artifacts/files/gone.log").exists()


def test_swapped_for_another_file_after_lstat_is_refused(tmp_path: Path) -> None:
    """If a path is swapped between lstat and open, the descriptor is not the file that was
    checked: it is not read."""
    writer = new_writer(tmp_path, "ev")
    evidence, journal = writer.root, writer.journal
    engine = CopyEngine(writer)
    target = tmp_path / "victim"
    target.write_text("original\n")
    real_lstat = os.lstat
    swapped = {}

    def lstat_then_swap(path, *a, **kw):  # type: ignore[no-untyped-def]
        st = real_lstat(path, *a, **kw)
        if path == os.fsencode(target) and not swapped:
            swapped["done"] = True
            os.rename(target, tmp_path / "moved")
            (tmp_path / "planted").write_text("planted\n")
            os.rename(tmp_path / "planted", target)
        return st

    import collectors.copy as copy_module

    copy_module.os.lstat = lstat_then_swap  # type: ignore[attr-defined]
    try:
        assert engine.preserve(os.fsencode(target), "artifacts/x", "files") is None
    finally:
        copy_module.os.lstat = real_lstat  # type: ignore[attr-defined]
        journal.close()
    [err] = [r for r in journal_records(evidence) if r["type"] == "error"]
    assert "replaced between lstat and open" in err["reason"]


def test_sparse_2gib_file_over_the_limit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "huge.img", "wb") as f:
        f.truncate(2 * 1024**3)
    (src / "small.txt").write_text("kept\n")
    started = time.monotonic()
    result = preserve(
        "--json",
        "-o",
        tmp_path / "out",
        "--only",
        "files",
        "--path",
        src,
        "--max-file-size",
        "100M",
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    import json

    evidence = Path(json.loads(result.stdout)["evidence_dir"])
    records = journal_records(evidence)
    [err] = by_source(records, src / "huge.img")
    assert err["type"] == "error" and "--max-file-size" in err["reason"]
    assert err["stat"]["size"] == 2 * 1024**3
    [ok] = by_source(records, src / "small.txt")
    assert ok["type"] == "artifact"
    assert verify(evidence).returncode == 0


def test_sparse_file_stays_sparse_in_the_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "lastlog", "wb") as f:
        f.truncate(256 * 1024**2)
        f.seek(100 * 1024**2)
        f.write(b"entry")
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    [rec] = by_source(journal_records(evidence), src / "lastlog")
    stored = evidence / rec["path"]
    assert rec["size"] == 256 * 1024**2 == stored.stat().st_size
    assert stored.stat().st_blocks * 512 < 8 * 1024**2  # holes kept, not 256 MiB of zeros
    assert verify(evidence).returncode == 0


def _written_path(line: str) -> str:
    """The absolute path a traced call names: ``openat(5</dir>, "name", ...)`` is
    ``/dir/name``; a call on a plain path is that path."""
    at = re.search(r"\((\d+)<([^>]*)>, \"([^\"]*)\"", line)
    if at:
        return os.path.join(at.group(2), at.group(3))
    return line.split('"')[1] if '"' in line else ""


@pytest.mark.skipif(not IS_ROOT, reason="needs root to read another user's proc entries")
def test_nothing_written_outside_the_output(tmp_path: Path) -> None:
    """strace every file the collector opens for writing: all are in the output directory."""
    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    out = tmp_path / "out"
    trace = tmp_path / "trace"
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-y",  # descriptors shown with their paths: *at() calls name a directory fd
            "-e",
            "trace=openat,open,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat",
            "-o",
            trace,
            sys.executable,
            "-B",
            "-c",
            PRESERVE_CODE,
            "-o",
            out,
            "--only",
            "files",
            "--path",
            src,
        ],
        check=True,
        capture_output=True,
        cwd=Path(__file__).parent.parent,
        timeout=60,
    )
    writes = []
    for line in trace.read_text().splitlines():
        if (
            "O_WRONLY" in line
            or "O_RDWR" in line
            or "O_CREAT" in line
            or "unlink" in line
            or "rename" in line
            or "mkdir" in line
        ) and "= -1" not in line:
            writes.append(_written_path(line))
    outside = [
        p
        for p in writes
        if not p.startswith(str(out))
        and p not in ("/dev/null",)
        and not p.startswith(("/proc/", "/dev/tty"))
    ]
    assert writes and not outside, outside
