"""The one directory walker: host trees for the collectors, the evidence directory for
``verify``, the kit's own folder for its self-check.

Why not ``os.walk``: in Python 3.11 it recurses (RecursionError near 1,000 levels), it
opens every directory by its whole path (ENAMETOOLONG once the path passes PATH_MAX,
about 2,000 levels of one-letter names) and it can be led out of the tree by a
directory swapped for a symlink between being listed and being entered.

Here the walk is a loop over an explicit stack. Each directory is opened relative to its
parent's descriptor (``openat`` with ``O_NOFOLLOW | O_DIRECTORY``), so no path is ever
longer than one name and a symlink is never entered; it must then be the very inode its
parent's listing saw (``st_dev``, ``st_ino``), so a directory swapped for another one is
reported, not walked. Its entries are examined through the same descriptor (``fstatat``).
Nothing is skipped silently: whatever cannot be opened, listed or examined goes to the
``on_error`` callback, which decides whether that is a failure (``verify``) or an error
record (collection).

Descriptors: the walk keeps one per directory on the current path, so that the next
subdirectory of any of them can be opened without a path. At most ``MAX_OPEN_DIRS`` are
open at once (5,000 levels would otherwise pass the default limit of 1,024): when there
are more, the shallowest one (never the top's) is closed. Going back up, a closed parent
is reopened through ``..`` from the directory being left, and checked to be the
directory that was listed there: one open a level, so a chain or a comb 5,000 deep costs
about 5,000 extra opens. When that check fails (the directory was moved meanwhile), the
parent is reopened by walking down from the nearest open ancestor one name at a time,
each step checked against the identity recorded when it was listed; a directory that is
no longer the one listed is reported, and what it still held is not walked.

``open_beneath`` opens a path below a directory descriptor the same way (every
component without following a symlink), for callers that must open what the walk found
at any depth."""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .statx import StatAt

DirId = tuple[int, int]  # (st_dev, st_ino) of a directory as the walk listed it
OnError = Callable[[bytes, OSError], None]
# Examines one directory's entries itself, through its descriptor, and returns the
# subdirectories to enter next as (name, identity) pairs (``walk_dirs``).
Lister = Callable[[int, bytes], list[tuple[bytes, DirId]]]
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_OPEN_DIRS = 64


class Entry(NamedTuple):
    """One entry of a walk: every non-directory, and empty directories if asked for."""

    path: bytes  # the walk's top joined with ``rel``
    rel: bytes  # relative to the top, '/'-separated
    parent: DirId  # the directory it was listed in (for an empty directory: its parent)
    stat: os.stat_result | None  # its lstat, with ``walk(lstat=True)``; None otherwise
    empty_dir: bool = False
    is_dir: bool = False  # a directory, yielded with ``walk(dirs=True)``
    birth_ns: int | None = None  # with ``walk(birth=True)``, where statx(2) reports it


class _Dir:
    """A directory on the current path: its name in its parent, identity, descriptor
    (None while closed for the budget), the subdirectories still to walk (reversed) and
    where its relative path ends in the walk's shared path buffer."""

    __slots__ = ("name", "ident", "fd", "todo", "end")

    def __init__(self, name: bytes, ident: DirId, fd: int | None, end: int) -> None:
        self.name = name
        self.ident = ident
        self.fd = fd
        self.todo: list[tuple[bytes, DirId]] = []
        self.end = end


def _replaced() -> OSError:
    return OSError(errno.ESTALE, "replaced while it was being walked")


def _same(fd: int, ident: DirId) -> bool:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino) == ident


class _Path:
    """The directories from the top down to the current one, within the descriptor budget.

    Their relative paths share one buffer (each directory's is a prefix of its child's),
    so memory grows with the depth, not with its square."""

    def __init__(self, top: _Dir, on_error: OnError, top_path: bytes) -> None:
        self.dirs = [top]
        self.opened: deque[_Dir] = deque()  # open descriptors below the top, shallowest first
        self.on_error = on_error
        self.top_path = top_path
        self._rel = bytearray()

    def rel(self, depth: int, name: bytes = b"") -> bytes:
        """The relative path of ``dirs[depth]``, or of its entry ``name``."""
        base = bytes(self._rel[: self.dirs[depth].end])
        if not name:
            return base
        return base + b"/" + name if base else name

    def push(self, name: bytes, ident: DirId, fd: int) -> None:
        """Enter ``name``, a subdirectory of the current (deepest) directory."""
        del self._rel[self.dirs[-1].end :]
        self._rel += b"/" + name if self._rel else name
        child = _Dir(name, ident, fd, len(self._rel))
        self.dirs.append(child)
        self._opened(child)

    def pop(self) -> None:
        """Leave the current directory. Its parent, if the budget closed it, is reopened
        through ``..`` (checked to be the directory listed there), so going back up a
        deep tree costs one open a level; ``fd_of`` walks down when that fails."""
        gone = self.dirs.pop()
        if gone.fd is None:
            return
        if self.dirs:  # the top is never in ``opened``
            deepest = self.opened.pop()  # the open ones are in depth order
            assert deepest is gone
            parent = self.dirs[-1]
            if parent.fd is None:
                try:
                    fd = os.open(b"..", DIR_FLAGS, dir_fd=gone.fd)
                except OSError:
                    fd = None
                if fd is not None and not _same(fd, parent.ident):
                    os.close(fd)
                    fd = None
                if fd is not None:
                    parent.fd = fd
                    self._opened(parent)
        os.close(gone.fd)
        gone.fd = None

    def _opened(self, d: _Dir) -> None:
        self.opened.append(d)
        if len(self.opened) >= MAX_OPEN_DIRS:
            shallowest = self.opened.popleft()
            assert shallowest.fd is not None
            os.close(shallowest.fd)
            shallowest.fd = None

    def fd_of(self, depth: int) -> int | None:
        """The descriptor of ``dirs[depth]``, reopened from its nearest open ancestor if
        the budget closed it; None (reported, and its pending subdirectories dropped)
        when a directory on the way is no longer the one that was listed."""
        wanted = self.dirs[depth]
        if wanted.fd is not None:
            return wanted.fd
        base = depth - 1
        while self.dirs[base].fd is None:
            base -= 1
        for k in range(base + 1, depth + 1):
            d, parent_fd = self.dirs[k], self.dirs[k - 1].fd
            assert parent_fd is not None
            try:
                fd = os.open(d.name, DIR_FLAGS, dir_fd=parent_fd)
            except OSError as e:
                self._lost(k, depth, e)
                return None
            if not _same(fd, d.ident):
                os.close(fd)
                self._lost(k, depth, _replaced())
                return None
            d.fd = fd
            self._opened(d)
        return wanted.fd

    def _lost(self, k: int, depth: int, error: OSError) -> None:
        for d in self.dirs[k : depth + 1]:
            d.todo.clear()
        self.on_error(os.path.join(self.top_path, self.rel(k)), error)

    def close(self) -> None:
        for d in self.dirs:
            if d.fd is not None:
                os.close(d.fd)
                d.fd = None


def walk(
    top: bytes,
    on_error: OnError,
    *,
    exclude: frozenset[DirId] = frozenset(),
    max_depth: int | None = None,
    ignore: frozenset[bytes] = frozenset(),
    lstat: bool = False,
    empty_dirs: bool = False,
    dirs: bool = False,
    birth: bool = False,
    exclude_devs: frozenset[int] = frozenset(),
    lister: Lister | None = None,
) -> Iterator[Entry]:
    """Yield every non-directory under ``top``, depth first, sorted by name within each
    directory (a directory's own entries before its subdirectories').

    Symlinks are yielded like any other entry, never followed; ``top`` itself is opened
    without following one either. ``exclude`` holds directory identities not to enter (the
    evidence output, say); ``ignore`` holds names directly under ``top`` that are neither
    yielded nor entered; with ``max_depth``, directories more than that many levels down
    are not listed (1: only ``top``'s own entries). ``lstat=True`` gives each entry its
    lstat (an entry that cannot be examined is reported and not yielded);
    ``empty_dirs=True`` also yields each empty directory below ``top``. ``dirs=True``
    yields every directory below ``top`` too (``is_dir``), with its parent's entries;
    ``birth=True`` takes each entry's one stat with ``statx(2)`` (``manifests.statx``) and
    gives its birth time; both imply ``lstat=True``. Directories on a device in
    ``exclude_devs`` (other file systems, by ``st_dev``) are not entered. With ``lister``,
    nothing is yielded: each directory goes to it instead (``walk_dirs``)."""
    try:
        fd = os.open(top, DIR_FLAGS)
    except OSError as e:
        on_error(top, e)
        return
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        on_error(top, e)
        return
    path = _Path(_Dir(b"", (st.st_dev, st.st_ino), fd, 0), on_error, top)
    stat_at = StatAt() if birth else None
    walker = _Walker(path, exclude, max_depth, lstat or dirs or birth, empty_dirs, dirs, stat_at)
    walker.exclude_devs = exclude_devs
    walker.lister = lister
    try:
        yield from walker.run(ignore)
    finally:
        walker.path.close()


def walk_dirs(
    top: bytes, on_error: OnError, lister: Lister, *, exclude: frozenset[DirId] = frozenset()
) -> None:
    """Enter every directory under ``top`` as ``walk`` does (through its parent's
    descriptor, never a symlink, checked to be the directory listed, at any depth) and hand
    each, ``top`` first, to ``lister(fd, path)``, which examines the entries itself and says
    which subdirectories to enter. For a caller whose per-entry work must stay one system
    call with no object of the walk's per entry (the timeline of a whole host).
    ``exclude``: identities of subdirectories not entered, whatever ``lister`` says."""
    for _ in walk(top, on_error, exclude=exclude, lister=lister):
        pass


@dataclass
class _Walker:
    """One walk's settings and its loop (``walk`` is the interface)."""

    path: _Path
    exclude: frozenset[DirId]
    max_depth: int | None
    lstat: bool
    empty_dirs: bool
    dirs: bool = False
    stat_at: StatAt | None = None
    exclude_devs: frozenset[int] = frozenset()
    lister: Lister | None = None

    def run(self, ignore: frozenset[bytes]) -> Iterator[Entry]:
        path, top = self.path, self.path.top_path
        yield from self._list(0, top, b"", ignore)
        base = top if top.endswith(b"/") else top + b"/"  # os.path.join(top, rel), faster
        dirs, lister = path.dirs, self.lister
        while dirs:
            depth = len(dirs) - 1
            here = dirs[depth]
            if not here.todo:
                path.pop()
                continue
            name, ident = here.todo.pop()
            parent_fd = here.fd if here.fd is not None else path.fd_of(depth)
            if parent_fd is None:
                continue
            rel = path.rel(depth, name)
            full = base + rel
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
            except OSError as e:
                path.on_error(full, e)
                continue
            if not _same(fd, ident):
                os.close(fd)
                path.on_error(full, _replaced())
                continue
            path.push(name, ident, fd)
            if lister is not None:  # no generator per directory: a host has 50,000
                self._hand_over(fd, full, lister)
            else:
                yield from self._list(depth + 1, full, rel, frozenset())

    def _hand_over(self, fd: int, full: bytes, lister: Lister) -> None:
        """The deepest directory (just opened, ``fd``) to ``lister``; what it says to
        enter is queued."""
        todo = lister(fd, full)
        if self.exclude:
            todo = [sub for sub in todo if sub[1] not in self.exclude]
        self.path.dirs[-1].todo = todo[::-1]

    def _list(
        self, depth: int, full: bytes, rel: bytes, ignore: frozenset[bytes]
    ) -> Iterator[Entry]:
        """List ``path.dirs[depth]`` (just opened) entirely through its descriptor, yield
        its non-directories and queue its subdirectories."""
        here = self.path.dirs[depth]
        assert here.fd is not None
        if self.lister is not None:
            self._hand_over(here.fd, full, self.lister)
            return
        try:
            with os.scandir(here.fd) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.path.on_error(full, e)
            return
        if not entries and depth and self.empty_dirs:
            parent = self.path.dirs[depth - 1].ident
            yield Entry(full, rel, parent, os.fstat(here.fd), empty_dir=True)
        descend = self.max_depth is None or depth + 1 < self.max_depth
        found: list[Entry] = []
        for entry in entries:
            name = os.fsencode(entry.name)
            if name in ignore:
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            st, born = None, None
            if is_dir or self.lstat:
                try:
                    if self.stat_at is not None:
                        st, born = self.stat_at(here.fd, name)
                    else:
                        st = entry.stat(follow_symlinks=False)
                except OSError as e:
                    self.path.on_error(os.path.join(full, name), e)
                    continue
            if not is_dir or self.dirs:
                entry_rel = rel + b"/" + name if rel else name
                path = os.path.join(full, name)
                found.append(Entry(path, entry_rel, here.ident, st, False, is_dir, born))
            if (
                is_dir
                and descend
                and st is not None
                and (st.st_dev, st.st_ino) not in self.exclude
                and st.st_dev not in self.exclude_devs
            ):
                here.todo.append((name, (st.st_dev, st.st_ino)))
        here.todo.reverse()
        yield from found


def open_beneath(dir_fd: int, relpath: bytes | str, flags: int = DIR_FLAGS) -> int:
    """Open ``relpath`` below the directory ``dir_fd``, one component at a time and none
    through a symlink, whatever the path's length; returns a new descriptor.

    Every component but the last is opened as a directory with ``O_NOFOLLOW``, the last
    with ``flags | O_NOFOLLOW``. A symlink or a non-directory on the way raises OSError
    (ELOOP or ENOTDIR) with ``filename`` the part that failed. An empty ``relpath`` gives a
    duplicate of ``dir_fd``. The caller still checks that what it opened is what it
    expected (``fstat``): a file can be swapped without any symlink."""
    raw = os.fsencode(relpath)
    parts = [p for p in raw.split(b"/") if p]
    if raw.startswith(b"/") or any(p in (b".", b"..") for p in parts):
        raise ValueError(f"not a plain relative path: {raw[:200]!r}")
    fd = os.dup(dir_fd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nxt = os.open(part, (flags if last else DIR_FLAGS) | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                e.filename = b"/".join(parts[: i + 1])
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd
