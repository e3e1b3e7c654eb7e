"""The initial pass of the ``logs`` collector, against real files: generations stored as
they are, identity by (device, inode), live files cut at a recorded offset, and hostile
log directories that must not hang or fool it."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import IS_ROOT, PRESERVE_ARGV, ROOT, collect_json, journal_records, verify
from logtools import write_profile


def _artifacts(evidence: Path) -> dict[str, dict]:
    return {
        r["source"]["path"]: r
        for r in journal_records(evidence)
        if r["type"] == "artifact" and r.get("collector") == "logs"
    }


def _run(tmp_path: Path, logs: Path, *extra: str, expect: tuple[int, ...] = (0,)) -> Path:
    profile = write_profile(tmp_path / "p.toml", logs)
    summary = collect_json(
        tmp_path / "out", "--only", "logs", "--profile", profile, *extra, expect=expect
    )
    evidence = Path(summary["evidence_dir"])
    assert verify(evidence).returncode == 0
    return evidence


def test_generations_and_journal_files_stored_byte_identical(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    (logs / "journal" / "abc").mkdir(parents=True)
    (logs / "syslog").write_bytes(b"now\n")
    (logs / "syslog.1").write_bytes(b"yesterday\n")
    (logs / "syslog.2.gz").write_bytes(gzip.compress(b"before\n" * 1000, mtime=0))
    (logs / "syslog-20261101.xz").write_bytes(os.urandom(3000))
    journal = os.urandom(1 << 20)
    (logs / "journal/abc/system.journal").write_bytes(journal)
    (logs / "journal/abc/user-1000@0005f3-abc.journal~").write_bytes(journal[:5000])
    evidence = _run(tmp_path, logs)
    records = _artifacts(evidence)
    for path in logs.rglob("*"):
        if path.is_file():
            record = records[str(path)]
            stored = (evidence / record["path"]).read_bytes()
            assert stored == path.read_bytes(), path
            assert record["sha256"] == hashlib.sha256(stored).hexdigest()
            st = path.stat()
            assert record["source"]["stat"]["ino"] == str(st.st_ino)
            assert record["source"]["stat"]["dev"] == str(st.st_dev)
            assert record["path"] == "artifacts/logs/" + str(path).lstrip("/")


def test_same_file_under_two_names_is_stored_once(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "auth.log").write_bytes(b"sshd: accepted\n")
    os.link(logs / "auth.log", logs / "auth.log.hardlink")
    evidence = _run(tmp_path, logs)
    stored = [p for p in (evidence / "artifacts/logs").rglob("*") if p.is_file()]
    assert len(stored) == 1
    skips = [r for r in journal_records(evidence) if r["type"] == "skipped"]
    assert len(skips) == 1
    assert skips[0]["reason"].startswith("duplicate: same file (device, inode)")
    assert skips[0]["duplicate_of"]["path"] == str(logs / "auth.log")
    assert skips[0]["duplicate_of"]["stored_path"].endswith("log/auth.log")


def test_profile_include_and_exclude_pick_the_files(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    for name in ("auth.log", "auth.log.1", "dpkg.log", "auth.log.swp"):
        (logs / name).write_text(name)
    profile = write_profile(tmp_path / "p.toml", logs, include='["auth*"]', exclude='["*.swp"]')
    summary = collect_json(tmp_path / "out", "--only", "logs", "--profile", profile)
    names = {Path(p).name for p in _artifacts(Path(summary["evidence_dir"]))}
    assert names == {"auth.log", "auth.log.1"}


def test_path_adds_a_log_source_with_only_logs(tmp_path: Path) -> None:
    logs, extra = tmp_path / "log", tmp_path / "app"
    logs.mkdir()
    extra.mkdir()
    (extra / "app.log").write_text("hello\n")
    evidence = _run(tmp_path, logs, "--path", str(extra))
    assert str(extra / "app.log") in _artifacts(evidence)
    # with files selected too, --path belongs to files and is not stored twice
    summary = collect_json(
        tmp_path / "out2", "--only", "logs,files", "--profile", tmp_path / "p.toml",
        "--path", extra,
    )  # fmt: skip
    records = [r for r in journal_records(Path(summary["evidence_dir"])) if r["type"] == "artifact"]
    app = str(extra / "app.log")
    owners = [r["collector"] for r in records if r.get("source", {}).get("path") == app]
    assert owners == ["files"], owners


def test_growing_file_is_cut_at_its_size_at_open(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    live = logs / "busy.log"
    with open(live, "wb") as f:
        f.write((b"0123456789" * 10 + b"\n") * (300_000))  # ~30 MiB
    stop = threading.Event()

    def writer() -> None:
        with open(live, "ab", buffering=0) as f:
            while not stop.is_set():
                f.write(b"appended while copying\n" * 100)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        evidence = _run(tmp_path, logs)
    finally:
        stop.set()
        thread.join()
    record = _artifacts(evidence)[str(live)]
    stored = (evidence / record["path"]).read_bytes()
    assert record["size"] == record["size_at_open"] == len(stored)
    assert record["range"] == {"offset": 0, "end": len(stored)}
    assert record["grew"] is True and record["size_after"] > record["size_at_open"]
    assert live.read_bytes()[: len(stored)] == stored


def test_fifo_and_symlink_loop_do_not_hang(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    (logs / "sub").mkdir(parents=True)
    os.mkfifo(logs / "evil.log")
    os.symlink(logs / "sub", logs / "sub" / "loop")
    os.symlink("self.log", logs / "self.log")
    (logs / "ok.log").write_text("fine\n")
    started = time.monotonic()
    evidence = _run(tmp_path, logs, "--watch", "1")
    assert time.monotonic() - started < 30
    skipped = {Path(r["source"]["path"]).name: r["reason"]
               for r in journal_records(evidence) if r["type"] == "skipped"}  # fmt: skip
    assert skipped["evil.log"].startswith("fifo")
    assert skipped["loop"].startswith("symlink") and skipped["self.log"].startswith("symlink")
    assert str(logs / "ok.log") in _artifacts(evidence)


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unreadable_logs_become_error_records(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "secure").write_text("secret\n")
    (logs / "secure").chmod(0)
    (logs / "messages").write_text("readable\n")
    profile = write_profile(tmp_path / "p.toml", logs)
    probe = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", "true"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("cannot drop capabilities here (setpriv needs CAP_SETPCAP)")
    # Root without the capabilities that bypass file permissions: a non-root reader.
    result = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--",
         *PRESERVE_ARGV, "-o", tmp_path / "out", "--only", "logs",
         "--profile", profile, "--watch", "1"],
        capture_output=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr.decode()
    evidence = next((tmp_path / "out").iterdir())
    errors = [r for r in journal_records(evidence) if r["type"] == "error"]
    assert len(errors) == 1  # once, not again by every rescan of the watch
    assert errors[0]["source"]["path"] == str(logs / "secure")
    assert "Permission denied" in errors[0]["reason"]
    assert str(logs / "messages") in _artifacts(evidence)
    assert b"secure" in result.stderr  # the responder is told, on one line


def test_max_file_size_holds_for_the_watch_too(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "huge.log").write_bytes(b"x" * 4096)
    (logs / "small.log").write_bytes(b"ok\n")
    evidence = _run(tmp_path, logs, "--max-file-size", "1K", "--watch", "1", expect=(1,))
    records = journal_records(evidence)
    errors = [r for r in records if r["type"] == "error"]
    assert [Path(e["source"]["path"]).name for e in errors] == ["huge.log"]
    stored = {Path(r["source"]["path"]).name for r in records
              if r["type"] == "artifact" and "source" in r}  # fmt: skip
    assert stored == {"small.log"}
