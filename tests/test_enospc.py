"""A full output drive stops collection cleanly: sealed, verifiable, exit 1."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PRESERVE_ARGV, ROOT, journal_records, preserve, requires_root, verify

from collectors import outcomes
from collectors.context import CollectContext


@pytest.fixture
def tiny_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=False)


@requires_root
def test_full_output_disk_seals_what_was_stored(tmp_path: Path, tiny_fs: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for n in range(30):  # 30 x 1 MiB of incompressible data into 8 MiB
        (src / f"f{n:02d}.bin").write_bytes(os.urandom(1024 * 1024))
    result = preserve("--json", "-o", tiny_fs, "--only", "files", "--path", src)
    assert result.returncode == 1, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert summary["status"] == "stopped: output disk full"
    evidence = Path(summary["evidence_dir"])
    records = journal_records(evidence)
    full = [r for r in records if r["type"] == "error" and r.get("errno") == "ENOSPC"]
    assert len(full) == 1
    stored = [r for r in records if r["type"] == "artifact" and r["collector"] == "files"]
    assert 0 < len(stored) < 30
    checked = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert checked.returncode == 0, checked.stdout.decode()


@requires_root
def test_full_disk_message_says_what_to_do(tmp_path: Path, tiny_fs: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for n in range(12):  # one file too big for the drive is only "does not fit": fill it
        (src / f"f{n:02d}.bin").write_bytes(os.urandom(1024 * 1024))
    result = preserve("-o", tiny_fs, "--only", "files", "--path", src)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "output drive is full" in err and "larger drive" in err
    assert "Traceback" not in err


def test_items_not_attempted_are_listed_then_counted(
    ctx: CollectContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcomes, "UNTRIED_RECORDS_MAX", 3)
    ctx.engine.full.set()  # as after "output disk full: collection stopped"
    for n in range(10):
        ctx.engine.submit(b"/x/%d" % n, f"artifacts/files/x/{n}", "files")
    ctx.engine.store_bytes("artifacts/volatile/p.json", b"{}", "processes")
    ctx.engine.close_untried()
    skipped = [r for r in journal_records(ctx.root) if r["type"] == "skipped"]
    assert [r["source"]["path"] for r in skipped[:3]] == ["/x/0", "/x/1", "/x/2"]
    assert {r["reason"] for r in skipped[:3]} == {outcomes.UNTRIED}
    [summary] = skipped[3:]
    assert summary["count"] == 8 and summary["by_collector"] == {"files": 7, "processes": 1}
    assert ctx.engine.counters.skipped == 11


@requires_root
def test_watch_ends_when_the_drive_fills_and_says_so(tmp_path: Path, tiny_fs: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    log.write_bytes(b"start\n")
    proc = subprocess.Popen(
        [*PRESERVE_ARGV, "--json", "-o", tiny_fs, "--only", "files", "--path", logs,
         "--watch", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        with open(log, "ab") as f:
            while proc.poll() is None:  # about 1 MiB a second into 4 MiB of room
                f.write(os.urandom(100 * 1024))
                f.flush()
                time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    summary = json.loads(out)
    assert summary["status"] == "stopped: output disk full", err.decode()
    assert summary["watch"]["reason"] == "output drive full"
    evidence = Path(summary["evidence_dir"])
    [ended] = [r for r in journal_records(evidence) if r.get("what") == "watch-ended"]
    assert ended["reason"] == "output drive full"
    assert verify(evidence).returncode == 0


@requires_root
def test_a_background_write_that_fills_the_drive_is_reported_as_the_drive(
    tiny_fs: Path,
) -> None:
    """Copies of 4 MiB and more are written on a helper thread (collectors/overlap.py):
    the ENOSPC it meets comes back to the copy loop as a ``WriteFailed`` (so the loop
    says "out of space", never "read failed" of the host's file), from the next call
    that waits on the writer, and only once."""
    from collectors.overlap import BackgroundHash, WriteFailed
    from manifests.digest import CHUNK
    from manifests.sink import LocalFile

    out = LocalFile(os.open(tiny_fs / "copy", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    h = BackgroundHash()
    bufs = [memoryview(bytearray(os.urandom(CHUNK))) for _ in range(h.buffers)]
    failure: WriteFailed | None = None
    try:
        for k in range(16):  # 16 MiB into 8 MiB
            h.ready_to_reuse()
            h.update(bufs[k % len(bufs)])
            h.write(out, bufs[k % len(bufs)])
        h.settle()
    except WriteFailed as e:
        failure = e
    finally:
        h.close()  # waits for the threads; does not raise the failure a second time
        out.close()
    assert failure is not None and failure.cause.errno == errno.ENOSPC
