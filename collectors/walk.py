"""Walking a host directory tree without trusting it.

Directories are entered only when ``lstat`` says they are directories, so symlinks (and
symlink loops) are never followed; they are yielded like any other entry and the copy
engine records them. Paths are bytes throughout, so no file name can be mangled."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator


def walk(
    top: bytes,
    on_error: Callable[[bytes, OSError], None],
    exclude: frozenset[tuple[int, int]] = frozenset(),
    max_depth: int | None = None,
) -> Iterator[bytes]:
    """Yield every non-directory entry under ``top`` (depth first, sorted by name).

    With ``max_depth``, entries deeper than that many levels below ``top`` are not listed
    (1: only ``top``'s own entries), so a narrow source never walks a huge tree."""
    stack = [(top, 1)]
    while stack:
        directory, depth = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            on_error(directory, e)
            continue
        subdirs = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not is_dir:
                yield entry.path
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                on_error(entry.path, e)
                continue
            if (st.st_dev, st.st_ino) not in exclude and (max_depth is None or depth < max_depth):
                subdirs.append((entry.path, depth + 1))
        stack.extend(reversed(subdirs))
