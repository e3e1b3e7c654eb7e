"""The SHA-256 of the tool's own code, recorded so a lab can tell which build collected."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

PACKAGES = ("agent", "collectors", "manifests")


@cache
def code_sha256() -> str:
    """Hash of every ``.py`` file of our packages: relative path, NUL, content digest."""
    base = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((base / package).rglob("*.py")):
            rel = path.relative_to(base).as_posix()
            h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
