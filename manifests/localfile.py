"""A file being written into an evidence directory on a local drive: a plain descriptor,
written chunk by chunk, around the page cache for large aligned copies (``O_DIRECT``),
holes kept, made read-only when finished. Split from ``manifests.sink`` (the contract)
and ``manifests.localdir`` (the directory that creates these)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

_O_DIRECT = getattr(os, "O_DIRECT", 0)
_ALIGN = 4096  # what O_DIRECT asks of offsets, lengths and buffers on any common drive


class NotRegularFileError(OSError):
    """A name in the evidence directory that should be a file is something else."""

    def __init__(self, rel: str) -> None:
        super().__init__(f"{rel} is not a regular file")


class LocalFile:
    """A file under a ``LocalDirSink``: a plain descriptor, written chunk by chunk."""

    def __init__(self, fd: int, read_only: bool = False) -> None:
        self.fd = fd
        self._read_only = read_only  # created with mode 0444: no chmod at the end
        self._holes = False
        self._direct = False  # writing around the page cache (``write_around_cache``)
        self._pos = 0  # the file offset, tracked while ``_direct``

    def write_around_cache(self) -> None:
        """Write the rest of the file with ``O_DIRECT`` while the writes stay aligned (a
        large copy, from page-aligned buffers): its bytes then go to the drive as they are
        written instead of filling the page cache, so a GiB of copy neither evicts what the
        host had cached nor waits, dirty, for the next seal's flush. A file system that
        refuses (tmpfs, FUSE) is written through the cache, as is an unaligned tail."""
        if not _O_DIRECT:
            return
        try:
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | _O_DIRECT)
            self._pos = os.lseek(self.fd, 0, os.SEEK_CUR)
        except OSError:
            return
        self._direct = True

    def _through_cache(self) -> None:
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
        self._direct = False

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        if self._direct and (len(view) % _ALIGN or self._pos % _ALIGN):
            self._through_cache()
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError as e:
                if not self._direct or e.errno != errno.EINVAL:
                    raise
                self._through_cache()  # the drive wants another alignment: the cache
                continue
            if self._direct:
                self._pos += n
            view = view[n:]

    def skip(self, count: int) -> None:
        """Leave a hole (sparse copies): the next write lands ``count`` bytes further."""
        os.lseek(self.fd, count, os.SEEK_CUR)
        self._holes = True
        self._pos += count

    def finish(self, size: int, times_ns: tuple[int, int] | None = None) -> None:
        """Fix the length (a trailing hole), the source's times, and make it read-only.

        Copying times and mode is best effort: FAT and exFAT drives cannot store every
        mode, and a refused ``chmod`` must not turn stored evidence into a failure."""
        if self._holes and os.fstat(self.fd).st_size != size:  # a trailing hole: no write
            os.ftruncate(self.fd, size)
        with contextlib.suppress(OSError):
            if times_ns is not None:
                os.utime(self.fd, ns=times_ns)
        if not self._read_only:
            with contextlib.suppress(OSError):
                os.fchmod(self.fd, 0o444)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _umask_keeps_read() -> bool:
    """Does the process's umask leave mode 0444 as it is (else ``finish`` chmods)?"""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8) & 0o444 == 0
    except (OSError, ValueError, IndexError):
        pass
    return False


UMASK_KEEPS_READ = _umask_keeps_read()
