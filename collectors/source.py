"""Opening a host file to read it, the one way every collector does: read-only, never
through a symlink at the last component, never blocking on a FIFO or a device, never
taking a terminal planted where a file was expected as the run's controlling terminal
(``O_NOCTTY``), and without changing the access time where the kernel allows it
(``O_NOATIME``)."""

from __future__ import annotations

import os
import stat

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)


def open_source(path: bytes, follow: bool = False, dir_fd: int | None = None) -> int:
    flags = _READ_FLAGS & ~os.O_NOFOLLOW if follow else _READ_FLAGS
    try:
        return os.open(path, flags | _NOATIME, dir_fd=dir_fd)
    except PermissionError:
        if not _NOATIME:
            raise
        # O_NOATIME is refused (EPERM) on files we do not own unless we are root.
        return os.open(path, flags, dir_fd=dir_fd)


def open_flags() -> tuple[int, int]:
    """``open_source``'s flags (``follow=False``) and the ``O_NOATIME`` it adds where the
    kernel allows it (0 where there is none), for the C that opens files the same way
    (collectors/_md5check.c)."""
    return _READ_FLAGS, _NOATIME


def open_seen(path: bytes, seen: os.stat_result) -> int | None:
    """A descriptor of ``path`` if it is still the regular file a walk saw (same device
    and inode), else None: a file swapped between the walk and the read is not read."""
    try:
        fd = open_source(path)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        st = None
    if (
        st is None
        or (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino)
        or not (stat.S_ISREG(st.st_mode))
    ):
        os.close(fd)
        return None
    return fd
