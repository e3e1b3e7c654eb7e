"""Configuration that makes collection impossible is refused before anything is
collected: exit 2, one line saying why, and no evidence directory left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import IS_ROOT, PRESERVE_ARGV, ROOT, preserve


def _one_error_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr.decode()
    return lines[0]


def test_a_missing_path_is_refused_before_anything_is_collected(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = preserve("-o", out, "--only", "files", "--path", tmp_path / "nope")
    assert result.returncode == 2, result.stderr.decode()
    assert "nope: no such file or directory" in _one_error_line(result.stderr)
    assert not out.exists() or not list(out.iterdir())


def test_an_output_behind_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    src = tmp_path / "src"
    src.mkdir()
    result = preserve("-o", tmp_path / "file" / "out", "--only", "files", "--path", src)
    assert result.returncode == 2, result.stderr.decode()
    assert "is not a directory" in _one_error_line(result.stderr)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to mount a read-only file system")
def test_a_read_only_output_is_refused(tmp_path: Path) -> None:
    """The kit's drive mounted read-only (a write-blocker, a forgotten switch): refused
    with exit 2 and the reason, inside a private mount namespace of the test's own."""
    ro, src = tmp_path / "ro", tmp_path / "src"
    ro.mkdir()
    src.mkdir()
    (src / "a").write_text("a\n")
    argv = " ".join(f"'{a}'" for a in PRESERVE_ARGV)
    script = (
        f"mount -t tmpfs -o ro tmpfs '{ro}' || exit 99; "
        f"exec {argv} -o '{ro}/out' --only files --path '{src}'"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    if result.returncode == 99:
        pytest.skip(f"cannot mount here: {result.stderr.decode().strip()}")
    assert result.returncode == 2, result.stderr.decode()
    assert "mounted read-only" in _one_error_line(result.stderr)


@pytest.mark.skipif(IS_ROOT, reason="root may write anywhere; the read-only mount test covers it")
def test_an_output_the_user_may_not_write_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        result = preserve("-o", locked / "out", "--only", "files", "--path", tmp_path)
        assert result.returncode == 2
        assert "not writable" in _one_error_line(result.stderr)
    finally:
        os.chmod(locked, 0o755)
