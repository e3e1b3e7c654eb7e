"""Getting bytes onto stable storage, cheaply.

A seal may only vouch for what is on disk, so before each seal the whole evidence file
system is flushed once with ``syncfs`` (one call for thousands of artifacts) instead of an
``fsync`` per file."""

from __future__ import annotations

import ctypes
import os
from typing import Any

_syncfs: Any = None
try:
    # The process's own symbols (libc is loaded already): ctypes.util.find_library would
    # run the host's /sbin/ldconfig or gcc, programs of a host we do not trust.
    _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
except (OSError, AttributeError, TypeError):  # not Linux: fall back to sync()
    _syncfs = None


def syncfs_fd(fd: int) -> None:
    """Flush the file system holding the open file or directory ``fd``."""
    if _syncfs is None or _syncfs(fd) != 0:
        os.sync()


def syncfs(path: str | os.PathLike[str]) -> None:
    """Flush the file system holding ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syncfs_fd(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory entry (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
