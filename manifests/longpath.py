"""Paths longer than one system call accepts (PATH_MAX: 4,096 bytes on Linux).

A tree collected from a hostile host can be 5,000 levels deep, and so is its copy in the
evidence directory. The kernel resolves such a path in pieces: open a prefix that fits,
then the rest relative to that descriptor. A path opened this way means exactly what one
``open(2)`` would make of it without the limit: symlinks in the middle are followed as
usual and ``O_NOFOLLOW`` applies to the last name only, so callers that must not be led
elsewhere check the identity of what they opened, as they do for short paths. (To open
something below a directory without following any symlink, use
``treewalk.open_beneath``.)

A path that fits in one call costs one call, as before; only longer ones pay one more
call per ``PIECE`` bytes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

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


def open_dir(path: str | bytes, create: bool = False, mode: int = 0o777) -> int:
    """A descriptor of the directory ``path``, of any length, its last name not followed
    if it is a symlink; with ``create``, missing directories are made first (as
    ``os.makedirs`` does, with ``mode``)."""
    pieces = _pieces(os.fsencode(path))
    fd: int | None = None
    try:
        for i, piece in enumerate(pieces):
            if create:
                _makedirs_at(fd, piece, mode)
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


def _makedirs_at(dir_fd: int | None, piece: bytes, mode: int) -> None:
    """``os.makedirs(piece, exist_ok=True)`` relative to ``dir_fd``: one call when the
    directory exists or only its last level is missing (a deep tree copied level by
    level), one more per missing level otherwise."""
    missing: list[bytes] = []
    target = piece
    while True:
        try:
            os.mkdir(target, mode, dir_fd=dir_fd)
            break
        except FileExistsError:
            break
        except FileNotFoundError:
            head, sep, tail = target.rpartition(b"/")
            if not sep or not head:
                raise
            missing.append(tail)
            target = head
    for name in reversed(missing):
        target = target + b"/" + name
        with suppress(FileExistsError):
            os.mkdir(target, mode, dir_fd=dir_fd)


def makedirs(path: str | bytes, mode: int = 0o777) -> None:
    """``os.makedirs(path, exist_ok=True)`` for a path of any length."""
    if len(os.fsencode(path)) <= PIECE:
        os.makedirs(path, mode, exist_ok=True)
    else:
        os.close(open_dir(path, create=True, mode=mode))


@contextmanager
def at(path: str | bytes) -> Iterator[tuple[int | None, str | bytes]]:
    """``(dir_fd, name)`` to pass to an ``*at()`` call (``os.open``, ``os.unlink``) on
    ``path``: ``(None, path)`` when it fits in one call, else its parent's descriptor
    (closed on exit) and its last name."""
    if len(os.fsencode(path)) <= PIECE:
        yield None, path
        return
    parent, name = os.path.split(path)
    fd = open_dir(parent)
    try:
        yield fd, name
    finally:
        os.close(fd)
