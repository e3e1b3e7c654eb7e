"""Opening a directory whose path is longer than one system call accepts (PATH_MAX:
4,096 bytes on Linux).

A tree collected from a hostile host can be 5,000 levels deep; the copy engine opens the
directory each file was listed in by its path, then checks that it is the very directory
the walk saw (``preserve(parent_id=...)``). The kernel resolves a long path in pieces: open
a prefix that fits, then the rest relative to that descriptor. A path opened this way
means exactly what one ``open(2)`` would make of it without the limit: symlinks in the
middle are followed as usual and ``O_NOFOLLOW`` applies to the last name only, so callers
check the identity of what they opened, as they do for short paths. (To open something
below a directory without following any symlink, use ``treewalk.open_beneath``.)

A path that fits in one call costs one call, as before; a longer one, one call more per
``PIECE`` bytes."""

from __future__ import annotations

import os

PIECE = 2048  # bytes resolved per call: well under PATH_MAX, whatever the names
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _pieces(path: bytes) -> list[bytes]:
    """``path`` cut at slashes into pieces of at most PIECE bytes (the first keeps a
    leading slash; a name is at most 255 bytes, so it always fits in a piece)."""
    parts = path.split(b"/")
    pieces, current = [], parts[0]
    for part in parts[1:]:
        joined = current + b"/" + part
        if len(joined) > PIECE and current:
            pieces.append(current)
            current = part
        else:
            current = joined
    pieces.append(current)
    return pieces


def open_dir(path: str | bytes) -> int:
    """A descriptor of the directory ``path``, of any length; its last name is not
    followed if it is a symlink (ELOOP or ENOTDIR)."""
    pieces = _pieces(os.fsencode(path))
    fd: int | None = None
    try:
        for i, piece in enumerate(pieces):
            flags = _DIR | (os.O_NOFOLLOW if i == len(pieces) - 1 else 0)
            nxt = os.open(piece, flags, dir_fd=fd)
            if fd is not None:
                os.close(fd)
            fd = nxt
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    assert fd is not None
    return fd
