"""Directory trees deeper than PATH_MAX and Python's recursion limit, built and removed
without either: through directory descriptors, and by moving subdirectories up.

``shutil.rmtree`` recurses in Python 3.11, and pytest removes old temporary directories
with it, so every deep tree a test makes must be removed by the test: ``scratch`` gives a
directory that is (on tmpfs where there is one: removing 5,000 directories one by one
takes seconds on a disk, milliseconds in memory)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def make_deep(
    base: Path,
    depth: int,
    files_at: Iterable[int] = (),
    name: bytes = b"d",
    bottom: bytes = b"bottom.txt",
    bottom_data: bytes = b"at the bottom\n",
) -> bytes:
    """A chain of ``depth`` directories ``name`` under ``base``; a file ``f<level>`` at each
    level in ``files_at`` (0: in ``base`` itself) and ``bottom`` (holding ``bottom_data``)
    in the last one. Returns the bottom file's path relative to ``base``."""
    levels = set(files_at)
    fd = os.open(base, _DIR)
    try:
        for level in range(depth):
            if level in levels:
                _write(fd, b"f%d" % level, b"level %d\n" % level)
            os.mkdir(name, dir_fd=fd)
            deeper = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = deeper
        _write(fd, bottom, bottom_data)
    finally:
        os.close(fd)
    return b"/".join([name] * depth + [bottom])


def _write(dir_fd: int, name: bytes, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def remove_tree(top: Path) -> None:
    """``shutil.rmtree`` for a tree of any depth: each subdirectory is moved up next to
    ``top`` before its parent is removed, so no path and no stack grows with the depth."""
    if not os.path.lexists(top):
        return
    if not top.is_dir() or top.is_symlink():
        top.unlink()
        return
    pending, moved = [top], 0
    while pending:
        directory = pending.pop()
        os.chmod(directory, 0o700)
        with os.scandir(directory) as it:
            entries = list(it)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                moved += 1
                parked = top.parent / f".{top.name}.removing-{moved}"
                os.rename(entry.path, parked)
                pending.append(parked)
            else:
                os.unlink(entry.path)
        os.rmdir(directory)


@contextmanager
def scratch(fallback: Path) -> Iterator[Path]:
    """A fresh directory for deep trees, removed with ``remove_tree`` on exit."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback
    top = Path(tempfile.mkdtemp(prefix="preserve-deep-", dir=parent))
    try:
        yield top
    finally:
        remove_tree(top)
