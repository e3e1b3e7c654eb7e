"""Reading a small file the tool did not write, without trusting what sits at its path."""

from __future__ import annotations

import errno
import os
import stat


def read_regular(path: str | bytes | os.PathLike[str], limit: int, *, follow: bool = True) -> bytes:
    """Read at most ``limit`` bytes of a regular file; never blocks on a FIFO or device
    planted where a file was expected (``O_NONBLOCK`` open, then ``fstat``). With
    ``follow=False`` a symlink at the last component is refused (``ELOOP``)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
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
