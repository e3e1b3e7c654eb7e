"""Walking a host directory tree without trusting it.

Directories are entered only when ``lstat`` says they are directories, so symlinks (and
symlink loops) are never followed; they are yielded like any other entry and the copy
engine records them. Paths are bytes throughout, so no file name can be mangled."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator

DirId = tuple[int, int]  # (st_dev, st_ino) of a directory as the walk listed it
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(
    top: bytes,
    on_error: Callable[[bytes, OSError], None],
    *,
    max_depth: int | None = None,
) -> Iterator[bytes]:
    """Yield every non-directory entry under ``top`` (depth first, sorted by name).

    With ``max_depth``, entries deeper than that many levels below ``top`` are not listed
    (1: only ``top``'s own entries), so a narrow source never walks a huge tree."""
    for path, _ in walk_entries(top, on_error, max_depth=max_depth):
        yield path


def walk_entries(
    top: bytes,
    on_error: Callable[[bytes, OSError], None],
    *,
    max_depth: int | None = None,
) -> Iterator[tuple[bytes, DirId]]:
    """Like ``walk``, with the identity of the directory each entry was listed in.

    A directory is listed through a descriptor opened without following a symlink and
    checked to be the inode its parent's listing saw, so a directory swapped for a
    symlink (to /etc, say) mid-walk is reported, not entered. The copy engine uses the
    identity to open each file in that same directory (``preserve(parent_id=...)``)."""
    stack: list[tuple[bytes, DirId | None, int]] = [(top, None, 1)]
    while stack:
        directory, expected, depth = stack.pop()
        try:
            here, files, subdirs = _list(directory, expected, on_error)
        except OSError as e:
            on_error(directory, e)
            continue
        for path in files:
            yield path, here
        if max_depth is not None and depth >= max_depth:
            continue
        stack.extend((path, ident, depth + 1) for path, ident in reversed(subdirs))


def _list(
    directory: bytes, expected: DirId | None, on_error: Callable[[bytes, OSError], None]
) -> tuple[DirId, list[bytes], list[tuple[bytes, DirId]]]:
    """One directory, read entirely while its descriptor is open (entries stat through it)."""
    fd = os.open(directory, _DIR_FLAGS)
    try:
        st = os.fstat(fd)
        here = (st.st_dev, st.st_ino)
        if expected is not None and here != expected:
            raise OSError(errno.ESTALE, "replaced while it was being walked")
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        files, subdirs = [], []
        for entry in entries:
            path = os.path.join(directory, os.fsencode(entry.name))
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not is_dir:
                files.append(path)
                continue
            try:
                sub = entry.stat(follow_symlinks=False)
            except OSError as e:
                on_error(path, e)
                continue
            subdirs.append((path, (sub.st_dev, sub.st_ino)))
        return here, files, subdirs
    finally:
        os.close(fd)
