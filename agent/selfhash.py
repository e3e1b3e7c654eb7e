"""The SHA-256 of the tool's own code, recorded so a lab can tell which build collected."""

from __future__ import annotations

import hashlib
import sys
from functools import cache
from pathlib import Path

from collectors.selfexec import frozen_kit_dir

PACKAGES = ("agent", "collectors", "manifests")


@cache
def code_sha256() -> str:
    """Hash of every ``.py`` file of our packages: relative path, NUL, content digest.

    A frozen kit has no ``.py`` files: there the code is identified by the hash of the
    kit's signed ``SHA256SUMS``, which covers the executables and every bundled library
    (and, failing that, by the hash of the executable itself)."""
    kit = frozen_kit_dir()
    if kit is not None:
        exe = Path(sys.executable)
        sums = Path(kit) / "SHA256SUMS"
        return hashlib.sha256((sums if sums.is_file() else exe).read_bytes()).hexdigest()
    base = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((base / package).rglob("*.py")):
            rel = path.relative_to(base).as_posix()
            h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
