"""Reading a small file the tool did not write, without trusting what sits at its path."""

from __future__ import annotations

import errno
import os
import stat


def read_regular(path: str | bytes | os.PathLike[str], limit: int, *, follow: bool = True) -> bytes:
    """Read at most ``limit`` bytes of a regular file. A FIFO or device planted where a
    file was expected is never opened: opening a FIFO wakes a writer blocked on it (a
    tripwire telling an intruder that a responder is reading their home), opening a
    device runs its driver (a watchdog arms, a tape rewinds). So the path is stat'ed
    first, and the open file checked again: ``O_NONBLOCK`` keeps a swap in between from
    hanging the open. With ``follow=False`` a symlink at the last
    component is refused (``ELOOP``)."""
    seen = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISLNK(seen.st_mode):
        raise OSError(errno.ELOOP, "a symlink: not followed", os.fsdecode(path))
    if not stat.S_ISREG(seen.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(path))
    flags = (
        os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    )
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat
            raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(path))
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_whole(path: bytes, limit: int) -> bytes:
    """All of a regular file, never through a symlink; ``EFBIG`` when it holds more than
    ``limit`` bytes (a database read cut short would parse as another one)."""
    data = read_regular(path, limit + 1, follow=False)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes: not read", os.fsdecode(path))
    return data
