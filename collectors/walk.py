"""Walking a host directory tree without trusting it: the collectors' view of the one
walker, ``manifests.treewalk`` (which says how symlinks, swapped directories and trees
deeper than PATH_MAX are handled). Paths are bytes throughout, so no file name can be
mangled."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from manifests.treewalk import DirId, Entry, Lister, walk_dirs
from manifests.treewalk import walk as _walk

__all__ = ["DirId", "Entry", "Lister", "walk", "walk_dirs", "walk_entries", "walk_stats"]


def walk(
    top: bytes,
    on_error: Callable[[bytes, OSError], None],
    *,
    max_depth: int | None = None,
) -> Iterator[bytes]:
    """Yield every non-directory entry under ``top`` (depth first, sorted by name).

    With ``max_depth``, entries deeper than that many levels below ``top`` are not listed
    (1: only ``top``'s own entries), so a narrow source never walks a huge tree."""
    return (e.path for e in _walk(top, on_error, max_depth=max_depth))


def walk_entries(
    top: bytes,
    on_error: Callable[[bytes, OSError], None],
    *,
    max_depth: int | None = None,
) -> Iterator[tuple[bytes, DirId]]:
    """Like ``walk``, with the identity of the directory each entry was listed in: the
    copy engine opens each file in that very directory (``preserve(parent_id=...)``)."""
    entries = _walk(top, on_error, max_depth=max_depth)
    return ((e.path, e.parent) for e in entries)


def walk_stats(
    top: bytes,
    on_error: Callable[[bytes, OSError], None],
    *,
    exclude: frozenset[DirId] = frozenset(),
    exclude_devs: frozenset[int] = frozenset(),
) -> Iterator[Entry]:
    """Every entry under ``top``, directories included, each with its one stat (taken by
    ``statx(2)``, with its birth time where the file system keeps one): a timeline's view.
    ``exclude`` holds the identities of directories not to enter (other file systems'
    roots, bind mounts), ``exclude_devs`` the devices not to enter; such directories are
    still listed themselves."""
    return _walk(top, on_error, exclude=exclude, exclude_devs=exclude_devs, dirs=True, birth=True)
