"""Debian's ewf-tools, the one judge of the E01 images the tests write: ``ewfverify``
re-reads every chunk against its checksum and the stored MD5 (and SHA-1), ``ewfinfo``
shows what a lab sees, ``ewfexport`` turns the image back into raw bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HAVE_EWF_TOOLS = all(shutil.which(t) for t in ("ewfverify", "ewfinfo", "ewfexport"))
requires_ewf_tools = pytest.mark.skipif(not HAVE_EWF_TOOLS, reason="needs ewf-tools")


def _run(
    argv: list[str | os.PathLike[str]], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def ewfverify(first_segment: Path) -> subprocess.CompletedProcess[str]:
    """``ewfverify`` with SHA-1 too (the digest section); returncode 0 means it passed."""
    return _run(["ewfverify", "-q", "-d", "sha1", first_segment])


def ewfinfo(first_segment: Path) -> str:
    result = _run(["ewfinfo", first_segment])
    assert result.returncode == 0, result.stderr
    return result.stdout


def export_sha256(first_segment: Path, scratch: Path) -> tuple[str, int]:
    """The image turned back into raw by ``ewfexport``: its SHA-256 and size."""
    target = scratch / "exported"
    result = _run(["ewfexport", "-u", "-q", "-f", "raw", "-t", target, first_segment])
    assert result.returncode == 0, result.stdout + result.stderr
    raw = target.with_suffix(".raw")
    digest, size = hashlib.sha256(), 0
    with raw.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    raw.unlink()
    return digest.hexdigest(), size
