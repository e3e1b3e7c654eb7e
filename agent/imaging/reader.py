"""Reading the source: whole chunks while it reads, one sector at a time where it does not.

A chunk that fails is read again once, sector by sector (the logical sector size);
a sector that fails again is written as zeros and becomes a ``BadRange`` (merged with its
neighbours), with the ``errno`` the kernel gave, as dc3dd's error log records it. Reads
use ``O_DIRECT`` where the source allows it (set with ``fcntl``, never an ioctl): the page
cache then neither hides a bad sector behind a cached copy nor widens it to a whole page,
and imaging a disk does not evict the host's cache. A device that disappears (``ENODEV``,
``ENXIO``, ``ENOMEDIUM``) ends the image instead of zero-filling the rest."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
from typing import NamedTuple

from .device import Source

GONE = (errno.ENODEV, errno.ENXIO, errno.ENOMEDIUM)


class BadRange(NamedTuple):
    """Bytes that could not be read (written as zeros): offset and length in the image."""

    offset: int
    length: int
    errno: int
    error: str


class SourceGoneError(OSError):
    """The device went away while it was read."""


class Reader:
    """Reads chunks of ``source`` into caller-owned, page-aligned buffers (``mmap``) whose
    size is a multiple of the sector size."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.sector = max(source.logical_sector, 512)
        self.direct = _try_direct(source.fd)

    def read(self, offset: int, buf: memoryview, want: int) -> tuple[int, list[BadRange]]:
        """Fill ``buf[:want]`` from ``offset`` (short only at the end of the source);
        returns the bytes read and the ranges that had to be zero-filled."""
        try:
            return self._read_at(offset, buf, 0, want), []
        except SourceGoneError:
            raise
        except OSError:
            return self._by_sector(offset, buf, want)

    def _read_at(self, offset: int, buf: memoryview, start: int, want: int) -> int:
        """``want`` bytes into ``buf[start:]``. O_DIRECT reads whole sectors: the tail of a
        regular file is asked for rounded up (into the buffer's slack) and comes back short."""
        done = 0
        while done < want:
            ask = want - done
            if self.direct and ask % self.sector:
                ask += self.sector - ask % self.sector
            begin = start + done
            try:
                n = os.preadv(self.source.fd, [buf[begin : begin + ask]], offset + done)
            except OSError as e:
                if e.errno in GONE:
                    raise SourceGoneError(e.errno, e.strerror) from e
                raise
            if n <= 0:
                break
            done += n
        return min(done, want)

    def _by_sector(self, offset: int, buf: memoryview, want: int) -> tuple[int, list[BadRange]]:
        bad: list[BadRange] = []
        done = 0
        while done < want:
            length = min(self.sector, want - done)
            try:
                n = self._read_at(offset + done, buf, done, length)
            except SourceGoneError:
                raise
            except OSError as e:
                buf[done : done + length] = bytes(length)
                code = e.errno or errno.EIO
                last = bad[-1] if bad else None
                if last and last.offset + last.length == offset + done and last.errno == code:
                    bad[-1] = last._replace(length=last.length + length)
                else:
                    bad.append(BadRange(offset + done, length, code, e.strerror or str(e)))
                n = length
            if n <= 0:
                break
            done += n
        return done, bad


def _try_direct(fd: int) -> bool:
    """Switch ``fd`` to ``O_DIRECT`` if the source allows it (tmpfs, some FUSE: not)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
        probe = mmap.mmap(-1, 4096)
        try:
            os.preadv(fd, [probe], 0)
            return True
        except OSError as e:
            if e.errno != errno.EINVAL:
                return True  # O_DIRECT works; the first sector is just unreadable
        finally:
            probe.close()
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return False
