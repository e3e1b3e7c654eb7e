"""Streaming SHA-256 shared by the copy engine and the verifier.

Both sides read in the same bounded chunks so memory never grows with file size."""

from __future__ import annotations

import hashlib
import io
import os

CHUNK = 1024 * 1024
ZERO_HASH = "0" * 64


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_fd(fd: int, buf: bytearray | None = None) -> tuple[str, int]:
    """Hash everything readable from ``fd``; returns (hex digest, bytes read)."""
    return digest_fd(fd, "sha256", buf)


def digest_fd(fd: int, algorithm: str, buf: bytearray | None = None) -> tuple[str, int]:
    """``sha256_fd`` with another algorithm (``md5``: what package databases record)."""
    buf = buf if buf is not None else bytearray(CHUNK)
    view = memoryview(buf)
    h = hashlib.new(algorithm)
    total = 0
    reader = io.FileIO(fd, "rb", closefd=False)
    while True:
        n = reader.readinto(view)
        if not n:
            break
        h.update(view[:n])
        total += n
    return h.hexdigest(), total


def sha256_path_nofollow(path: str | bytes, buf: bytearray | None = None) -> tuple[str, int]:
    """Hash a file without following a symlink at its last component."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return sha256_fd(fd, buf)
    finally:
        os.close(fd)
