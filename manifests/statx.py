"""``statx(2)`` relative to a directory descriptor, for the birth time ``os.lstat`` lacks.

Python 3.11 has no ``os.statx``. The C library's own ``statx`` (glibc 2.28 and later) is
reached through the symbols already loaded in this process (``ctypes.CDLL(None)``), never
by searching for a library: ``ctypes.util.find_library`` runs host programs (``ldconfig``,
``gcc``), which a forensic tool must not. Where there is no ``statx`` symbol, or the kernel
or file system does not report a birth time, the stat is taken with ``os.stat`` and the
birth time is ``None``; callers say so (a bodyfile writes 0)."""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Any

AT_SYMLINK_NOFOLLOW = 0x100
AT_NO_AUTOMOUNT = 0x800
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
_SIZE = 256  # sizeof(struct statx), including its spare room
# mask, blksize, (attributes), nlink, uid, gid, mode, (spare), ino, size, blocks,
# (attributes_mask), then four timestamps (atime, btime, ctime, mtime: s64 sec, u32 nsec,
# s32 reserved) and the rdev and dev major/minor pairs (struct statx, linux/stat.h).
_LAYOUT = struct.Struct("=IIQIIIHHQQQQ" + "qiI" * 4 + "IIII")


def _load() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.statx
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_STATX = _load()


class StatAt:
    """``lstat`` of names in a directory, with birth times. One instance per thread (it
    owns its result buffer)."""

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(_SIZE)
        self.available = _STATX is not None

    def __call__(self, dir_fd: int, name: bytes) -> tuple[os.stat_result, int | None]:
        """The stat of ``name`` in ``dir_fd`` (a symlink's own, never its target's) and
        its birth time in ns since the epoch, or None where it is not known."""
        if _STATX is None:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False), None
        flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT
        if _STATX(dir_fd, name, flags, STATX_BASIC_STATS | STATX_BTIME, self._buf) != 0:
            err = ctypes.get_errno()
            if err == 38:  # ENOSYS: a kernel older than 4.11
                return os.stat(name, dir_fd=dir_fd, follow_symlinks=False), None
            raise OSError(err, os.strerror(err), name)
        return _result(_LAYOUT.unpack_from(self._buf.raw))


def available() -> bool:
    """Is ``statx`` in the C library this process loaded (else ``os.stat``, no birth)?"""
    return _STATX is not None


def from_raw(raw: bytes) -> tuple[os.stat_result, int | None]:
    """A ``struct statx`` as the kernel wrote it (taken in C, collectors/_dirents.c) as
    ``StatAt`` gives it: the stat, and the birth time in ns or None."""
    return _result(_LAYOUT.unpack_from(raw))


def _result(f: tuple[int, ...]) -> tuple[os.stat_result, int | None]:
    mask, blksize, _, nlink, uid, gid, mode, _, ino, size, blocks, _ = f[:12]
    a_s, a_n, _, b_s, b_n, _, c_s, c_n, _, m_s, m_n, _ = f[12:24]
    rdev_major, rdev_minor, dev_major, dev_minor = f[24:28]
    a_ns, c_ns, m_ns = a_s * 10**9 + a_n, c_s * 10**9 + c_n, m_s * 10**9 + m_n
    st = os.stat_result(
        (mode, ino, os.makedev(dev_major, dev_minor), nlink, uid, gid, size, a_s, m_s, c_s),
        {
            "st_atime": a_s + a_n * 1e-9,  # as os.stat computes them, to the last bit
            "st_mtime": m_s + m_n * 1e-9,
            "st_ctime": c_s + c_n * 1e-9,
            "st_atime_ns": a_ns,
            "st_mtime_ns": m_ns,
            "st_ctime_ns": c_ns,
            "st_blksize": blksize,
            "st_blocks": blocks,
            "st_rdev": os.makedev(rdev_major, rdev_minor),
        },
    )
    birth = b_s * 10**9 + b_n if mask & STATX_BTIME else None
    return st, birth
