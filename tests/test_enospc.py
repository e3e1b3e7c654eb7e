"""A full output drive stops collection cleanly: sealed, verifiable, exit 1."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import journal_records, preserve, requires_root, verify


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
    (src / "big.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    result = preserve("-o", tiny_fs, "--only", "files", "--path", src)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "output drive is full" in err and "larger drive" in err
    assert "Traceback" not in err
