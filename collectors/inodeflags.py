"""Inode flags as ``lsattr`` shows them, read with the ``FS_IOC_GETFLAGS`` ioctl and no
host binary, through a descriptor that cannot be steered.

Intruders ``chattr +i`` their cron entry, unit file or ``authorized_keys`` so that an
administrator's ``rm`` fails with "Operation not permitted", and ``chattr +a`` a log so
it can only grow; ``ls -l`` shows neither. Each entry is opened ``O_PATH|O_NOFOLLOW``
relative to the directory it was listed in (a symlink is never followed, a FIFO or a
device is never opened for reading: opening ``/dev/watchdog`` arms it), checked with
``fstat`` on that descriptor, and only a regular file or a directory is reopened
read-only through ``/proc/self/fd`` for the ioctl: the same inode, whatever was renamed
in the meantime. Nothing is read, so no access time changes."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass

FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long); the kernel reads and writes an int
# lsattr's letters in lsattr's order (e2fsprogs lib/e2p/pf.c), with the flag bits of
# include/uapi/linux/fs.h.
LETTERS = (
    (0x00000001, "s"), (0x00000002, "u"), (0x00000008, "S"), (0x00010000, "D"),
    (0x00000010, "i"), (0x00000020, "a"), (0x00000040, "d"), (0x00000080, "A"),
    (0x00000004, "c"), (0x00000800, "E"), (0x00004000, "j"), (0x00001000, "I"),
    (0x00008000, "t"), (0x00020000, "T"), (0x00080000, "e"), (0x00800000, "C"),
    (0x02000000, "x"), (0x40000000, "F"), (0x10000000, "N"), (0x20000000, "P"),
    (0x00100000, "V"), (0x00000400, "m"),
)  # fmt: skip
IMMUTABLE, APPEND = 0x10, 0x20
# Flags file systems set on their own (extents, hashed directories, inline data,
# encryption, casefolding, project inheritance, huge files, verity): not worth a row.
ROUTINE = 0x00080000 | 0x00001000 | 0x10000000 | 0x00000800 | 0x40000000 | 0x20000000 | 0x40000
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_REOPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What an ioctl error means: the file system keeps no such flags.
UNSUPPORTED = frozenset({errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})


def letters(flags: int) -> str:
    """``flags`` as lsattr prints them: one letter per flag set, ``-`` for each unset."""
    return "".join(c if flags & bit else "-" for bit, c in LETTERS)


def set_letters(flags: int) -> str:
    """Only the letters of the flags that are set (``ia`` for immutable, append-only)."""
    return "".join(c for bit, c in LETTERS if flags & bit)


def _ioctl(fd: int) -> int:
    buf = bytearray(8)
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
    value: int = struct.unpack_from("=I", buf)[0]
    return value


def flags_of_fd(fd: int) -> int:
    """The flags of the inode open as ``fd`` (a directory's descriptor, or a regular
    file's); raises OSError (``ENOTTY``/``EOPNOTSUPP``: the file system has none)."""
    return _ioctl(fd)


def flags_at(dir_fd: int, name: bytes) -> tuple[os.stat_result, int] | None:
    """(stat, flags) of the regular file or directory ``name`` in ``dir_fd``, or None
    for anything else (a symlink, FIFO, socket or device: not opened for reading)."""
    pfd = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(pfd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return None
        fd = os.open(f"/proc/self/fd/{pfd}", _REOPEN)
        try:
            return st, _ioctl(fd)
        finally:
            os.close(fd)
    finally:
        os.close(pfd)


@dataclass(frozen=True)
class Flagged:
    """One inode the sweep read: its path, stat and flags (``error``: why not read)."""

    path: bytes
    st: os.stat_result | None
    flags: int | None
    error: OSError | None = None


class Budget:
    """How many more entries a sweep may read; shared by the trees of one run."""

    def __init__(self, left: int) -> None:
        self.left = left

    def take(self) -> None:
        if self.left <= 0:
            raise Full
        self.left -= 1


class Full(Exception):
    """The sweep reached its entry limit."""


def sweep(top: bytes, budget: Budget, depth: int = 64) -> Iterator[Flagged]:
    """Every directory and regular file under ``top`` (``top`` itself included) with its
    flags, within ``budget`` (raises ``Full`` when it runs out). Directories are opened
    ``O_NOFOLLOW`` below the one they were listed in, so a symlinked directory is never
    entered, nor another file system mounted below ``top``."""
    try:
        fd = os.open(top, _DIR_FLAGS)
    except OSError as e:
        if e.errno == errno.ENOTDIR:  # a file named as a tree: read it alone
            budget.take()
            yield from _one(top)
        elif e.errno not in (errno.ENOENT, errno.ELOOP):
            yield Flagged(top, None, None, e)
        return
    yield from _tree(fd, top, budget, depth)


def _one(path: bytes) -> Iterator[Flagged]:
    parent, name = os.path.split(path)
    try:
        dfd = os.open(parent or b".", _DIR_FLAGS)
    except OSError as e:
        yield Flagged(path, None, None, e)
        return
    try:
        got = flags_at(dfd, name)
    except OSError as e:
        yield Flagged(path, None, None, e)
    else:
        if got is not None:
            yield Flagged(path, got[0], got[1])
    finally:
        os.close(dfd)


def _tree(fd: int, path: bytes, budget: Budget, depth: int) -> Iterator[Flagged]:
    """``fd`` (open; closed here) and everything below it."""
    try:
        budget.take()
        st = os.fstat(fd)
        try:
            yield Flagged(path, st, flags_of_fd(fd))
        except OSError as e:
            yield Flagged(path, st, None, e)
        with os.scandir(fd) as it:
            listed = sorted((os.fsencode(e.name), e.is_dir(follow_symlinks=False),
                             e.is_file(follow_symlinks=False)) for e in it)  # fmt: skip
        subdirs: list[bytes] = []
        for name, is_dir, is_file in listed:
            if is_dir:
                subdirs.append(name)
            elif is_file:  # symlinks, FIFOs, sockets, devices: no flags to read safely
                budget.take()
                child = os.path.join(path, name)
                try:
                    got = flags_at(fd, name)
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        yield Flagged(child, None, None, e)
                    continue
                if got is not None:
                    yield Flagged(child, got[0], got[1])
        for name in subdirs if depth > 0 else ():
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    yield Flagged(os.path.join(path, name), None, None, e)
                continue
            if os.fstat(sub).st_dev != st.st_dev:
                os.close(sub)
                continue
            yield from _tree(sub, os.path.join(path, name), budget, depth - 1)
    finally:
        os.close(fd)
