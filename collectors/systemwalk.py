"""The executables and libraries in the system bin/sbin/lib directories, walked once a
run for the two collectors that need them: ``packages`` (which of them no package owns)
and ``executables`` (the SHA-256 of each). Walking ``/usr/lib`` is tens of thousands of
``statx`` calls; the two collectors run at the same time (``packages`` alongside its
stage), so whichever asks first walks while the other waits, and both then read the same
listing, in the same order, with the same listing errors (each collector journals them
under its own name, as when each walked for itself).

Only what both keep is held: the regular files that are executables or libraries
(``is_executable``), a few thousand on a server, never every file of ``/usr``. The
evidence directory is not entered (its stat identity is excluded): what this tool is
writing is not the host's. Kept in ``ctx.shared["system-walk"]`` for the rest of the run.

Where ``collectors/_bodylist.c`` was built, each directory's entries are examined there
(``list_exec``), so only what is kept becomes a Python object; the Python walk
(``walk_stats``) is the fallback and gives the very same listing."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from manifests import statx

from .context import CollectContext
from .walk import DirId, walk_dirs, walk_stats

try:  # the per-entry work in C (collectors/_bodylist.c), where it was built
    from . import _bodylist  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - a build without a compiler
    _bodylist = None

KEY = "system-walk"
SYSTEM_DIRS = (
    b"bin", b"sbin", b"lib", b"lib32", b"lib64", b"libx32",
    b"usr/bin", b"usr/sbin", b"usr/lib", b"usr/lib32", b"usr/lib64", b"usr/libx32",
    b"usr/libexec", b"usr/local/bin", b"usr/local/sbin", b"usr/local/lib",
)  # fmt: skip
# (host path, the walk's stat, birth time in ns or None)
Found = tuple[bytes, os.stat_result, int | None]


def is_executable(path: bytes, mode: int) -> bool:
    """An executable or a shared library: what a rootkit replaces."""
    name = os.path.basename(path)
    return bool(mode & 0o111) or name.endswith(b".so") or b".so." in name


@dataclass
class SystemWalk:
    """The walk of each real system directory (``realpath`` of each of ``SYSTEM_DIRS``
    that is a directory, each once, in that order)."""

    root: bytes
    tops: list[bytes] = field(default_factory=list)
    files: dict[bytes, list[Found]] = field(default_factory=dict)
    errors: dict[bytes, list[tuple[bytes, OSError]]] = field(default_factory=dict)


class _NoStatx(Exception):
    """statx(2) refused (ENOSYS) in C: the walk is redone in Python."""


def _key(item: tuple[bytes, object]) -> str:
    return os.fsdecode(item[0])  # scandir's str names: the order walk_stats lists in


def _scandir_error(fd: int) -> OSError | None:
    """The error ``walk_stats`` reports for a directory that cannot be read (scandir's)."""
    try:
        with os.scandir(fd) as it:
            list(it)
    except OSError as e:
        return e
    return None


def _c_listing(top: bytes, skip: frozenset[DirId]) -> SystemWalk:
    """``_listing`` with each directory's entries examined by ``_bodylist.list_exec``:
    one ``statx`` an entry and no Python object but for what is kept (~100,000 entries
    for a few thousand files). Same files, order and errors as ``walk_stats``; the
    descent and its checks are ``walk_dirs``'s."""
    one = SystemWalk(top, [top], {top: []}, {top: []})
    files, errors = one.files[top], one.errors[top]

    def on_error(path: bytes, error: OSError) -> None:
        errors.append((path, error))

    def lister(fd: int, full: bytes) -> list[tuple[bytes, DirId]]:
        try:
            got = _bodylist.list_exec(fd)
        except OSError as c_error:
            on_error(full, _scandir_error(fd) or c_error)
            return []
        if got is None:
            raise _NoStatx
        found, subdirs, failed = got
        if failed:
            for err, name in sorted(failed, key=lambda f: os.fsdecode(f[1])):
                on_error(os.path.join(full, name), OSError(err, os.strerror(err), name))
        for name, raw in sorted(found, key=_key) if len(found) > 1 else found:
            st, birth = statx.from_raw(raw)
            files.append((os.path.join(full, name), st, birth))
        return sorted(subdirs, key=_key) if len(subdirs) > 1 else subdirs

    walk_dirs(top, on_error, lister, exclude=skip)
    return one


def _listing(top: bytes, skip: frozenset[tuple[int, int]]) -> SystemWalk:
    """One real directory's executables and listing errors."""
    if _bodylist is not None and statx.available():
        try:
            return _c_listing(top, skip)
        except _NoStatx:
            pass
    one = SystemWalk(top, [top], {top: []}, {top: []})

    def on_error(path: bytes, error: OSError) -> None:
        one.errors[top].append((path, error))

    for entry in walk_stats(top, on_error, exclude=skip):
        st = entry.stat
        if entry.is_dir or st is None or not stat.S_ISREG(st.st_mode):
            continue
        if is_executable(entry.path, st.st_mode):
            one.files[top].append((entry.path, st, entry.birth_ns))
    return one


def _walk(root: bytes, output: tuple[int, int]) -> SystemWalk:
    walked = SystemWalk(root)
    for top in SYSTEM_DIRS:
        real = os.path.realpath(os.path.join(root, top))
        if real in walked.files or not os.path.isdir(real):
            continue
        one = _listing(real, frozenset({output}))
        walked.tops.append(real)
        walked.files[real], walked.errors[real] = one.files[real], one.errors[real]
    return walked


def system_executables(ctx: CollectContext, root: bytes) -> SystemWalk:
    """The run's walk of the system directories under ``root``, made on first use."""
    with ctx.lock:  # the other collector waits here for the walk, not for a second one
        walked = ctx.shared.get(KEY)
        if not isinstance(walked, SystemWalk) or walked.root != root:
            out = os.stat(ctx.root)
            walked = ctx.shared[KEY] = _walk(root, (out.st_dev, out.st_ino))
        return walked
