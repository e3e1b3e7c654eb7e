"""An evidence directory on a mounted file system (``LocalDirSink``), held by its
directory descriptor: every name is resolved relative to it, one component at a time with
``O_NOFOLLOW``. So a stored path deeper than ``PATH_MAX`` still works, a symlink planted
in the output is never followed, and an evidence directory deleted or replaced under the
run is noticed (``EvidenceLostError``) instead of being silently recreated somewhere
else. The contract it fulfils is ``manifests.sink.Sink``; its files are
``manifests.localfile.LocalFile``."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

from .durable import syncfs_fd
from .errors import EvidenceLostError
from .fstype import FileSystem, probe
from .localfile import UMASK_KEEPS_READ, LocalFile, NotRegularFileError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class CreateDir(NamedTuple):
    """Where and how read-only artifacts are created (``read_only_dir``)."""

    dir_fd: int
    flags: int
    chmod: bool


_DIR_CACHE = 64  # open directory descriptors kept, so a tree of files costs one open each


def _plain_parts(rel: str) -> list[str]:
    """The components of ``rel``, refused unless it is a plain relative path."""
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a plain relative path: {rel!r}")
    return parts


class LocalDirSink:
    """An evidence directory on a mounted file system, held by its descriptor."""

    def __init__(self, root_fd: int, location: str) -> None:
        self._root = root_fd
        self._identity = _identity(os.fstat(root_fd))
        self._location = location
        # What the drive can hold (FAT32: no file of 4 GiB, no holes), known before a copy.
        self._file_system = probe(root_fd)
        self._dirs: OrderedDict[str, list[int]] = OrderedDict()  # path -> [fd, users]
        self._lock = threading.Lock()

    # -- opening -------------------------------------------------------------------

    @classmethod
    def create_new(cls, output: str | os.PathLike[str], base: str) -> LocalDirSink:
        """Make ``OUTPUT/<base>`` (or ``<base>-N``): a new, empty directory, never reused."""
        output = os.fspath(output)
        os.makedirs(output, exist_ok=True)
        parent = os.open(output, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for n in range(1, 100):
                name = base if n == 1 else f"{base}-{n}"
                try:
                    os.mkdir(name, 0o750, dir_fd=parent)
                except FileExistsError:
                    continue
                os.fsync(parent)
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                return cls(fd, os.path.join(output, name))
        finally:
            os.close(parent)
        raise FileExistsError(f"could not create a new evidence directory under {output}")

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> LocalDirSink:
        """An evidence directory that exists already (custody transfers, releases)."""
        return cls(os.open(os.fspath(path), _DIR_FLAGS), os.fspath(path))

    @property
    def location(self) -> str:
        return self._location

    @property
    def file_system(self) -> FileSystem:
        return self._file_system

    # -- names ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _dir(self, parts: list[str], make: bool) -> Iterator[int]:
        """Descriptor of the directory ``parts`` below the root, made on the way if asked.

        Each component is opened with ``O_NOFOLLOW`` relative to its parent, so depth is
        not bounded by ``PATH_MAX`` and a symlink is an error, never a detour. Recently
        used directories stay open (a tree of files costs one ``open`` a file); one in use
        by another thread is never closed under it."""
        key = "/".join(parts)
        if not key:
            yield self._root
            return
        with self._lock:
            entry = self._dirs.get(key)
            if entry is None:
                entry = self._open_chain(parts, make)
            self._dirs.move_to_end(key)
            entry[1] += 1
        try:
            yield entry[0]
        finally:
            with self._lock:
                entry[1] -= 1
                self._evict()

    def _open_chain(self, parts: list[str], make: bool) -> list[int]:
        """Walk down from the deepest cached ancestor; called with the lock held."""
        depth = len(parts)
        while depth and "/".join(parts[:depth]) not in self._dirs:
            depth -= 1
        fd = self._dirs["/".join(parts[:depth])][0] if depth else self._root
        for i in range(depth, len(parts)):
            try:
                fd = os.open(parts[i], _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not make:
                    raise
                self.check()
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parts[i], 0o750, dir_fd=fd)
                fd = os.open(parts[i], _DIR_FLAGS, dir_fd=fd)
            # Evict before caching the new one (which opens the next level): a chain 5,000
            # levels deep must not hold 5,000 descriptors.
            self._evict()
            self._dirs["/".join(parts[: i + 1])] = [fd, 0]
        return self._dirs["/".join(parts)]

    def _evict(self) -> None:
        """Close the least recently used directories beyond the cache size, if idle."""
        if len(self._dirs) <= _DIR_CACHE:
            return
        for key in list(self._dirs):
            if len(self._dirs) <= _DIR_CACHE:
                break
            fd, users = self._dirs[key]
            if not users:
                del self._dirs[key]
                os.close(fd)

    @contextlib.contextmanager
    def _noticing_loss(self) -> Iterator[None]:
        """A name that should be there and is not: first ask whether the whole directory
        is gone, which is ``EvidenceLostError`` rather than one missing file."""
        try:
            yield
        except FileNotFoundError:
            self.check()
            raise

    def _split(self, rel: str) -> tuple[list[str], str]:
        parts = _plain_parts(rel)
        return parts[:-1], parts[-1]

    # -- operations ----------------------------------------------------------------

    def create(self, rel: str, append: bool = False) -> LocalFile:
        """Create ``rel`` exclusively (never overwrite), making its directories."""
        parents, name = self._split(rel)
        flags = _CREATE_FLAGS | (os.O_APPEND if append else 0)
        with self._noticing_loss(), self._dir(parents, make=True) as directory:
            return LocalFile(os.open(name, flags, 0o644 if append else 0o600, dir_fd=directory))

    def create_read_only(self, rel: str) -> LocalFile:
        """``create`` an artifact under its final name, mode 0444 from the start (the
        descriptor returned still writes): one ``chmod`` fewer per file."""
        parents, name = self._split(rel)
        with self._noticing_loss(), self._dir(parents, make=True) as directory:
            fd = os.open(name, _CREATE_FLAGS, 0o444, dir_fd=directory)
        return LocalFile(fd, read_only=UMASK_KEEPS_READ)

    @contextlib.contextmanager
    def read_only_dir(self, parent: str) -> Iterator[CreateDir]:
        """Where ``create_read_only`` creates the files of directory ``parent``, for code
        that creates them itself (the C copy of small files): the directory, made if
        needed and held open meanwhile, the flags, and whether the mode must be set
        again after creation (a umask that takes read)."""
        parts = _plain_parts(parent) if parent else []
        with self._noticing_loss(), self._dir(parts, make=True) as directory:
            yield CreateDir(directory, _CREATE_FLAGS, not UMASK_KEEPS_READ)

    def append_existing(self, rel: str) -> LocalFile:
        """Open an existing file to append to it (and read it back: the journal's tail)."""
        parents, name = self._split(rel)
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        with self._noticing_loss(), self._dir(parents, make=False) as directory:
            fd = os.open(name, flags, dir_fd=directory)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotRegularFileError(rel)
        return LocalFile(fd)

    def makedirs(self, rel: str) -> None:
        """Make the directory ``rel`` and its parents (for files host commands write)."""
        with self._noticing_loss(), self._dir(rel.split("/"), make=True):
            pass

    def remove(self, rel: str) -> None:
        parents, name = self._split(rel)
        with contextlib.suppress(FileNotFoundError), self._dir(parents, make=False) as directory:
            os.unlink(name, dir_fd=directory)

    def rename(self, old: str, new: str) -> None:
        old_parents, old_name = self._split(old)
        new_parents, new_name = self._split(new)
        with (
            self._noticing_loss(),
            self._dir(old_parents, make=False) as src,
            self._dir(new_parents, make=True) as dst,
        ):
            os.rename(old_name, new_name, src_dir_fd=src, dst_dir_fd=dst)

    def remove_empty_dirs(self, dirs: set[str], stop_at: str) -> None:
        """Remove each directory of ``dirs`` that is empty, then its parents while they
        are empty, up to (not including) ``stop_at``: what a discarded copy left."""
        with self._lock:
            doomed = [k for k in self._dirs if any(k == d or k.startswith(d + "/") for d in dirs)]
            for key in doomed:
                os.close(self._dirs.pop(key)[0])
        for directory in sorted(dirs, key=len, reverse=True):
            parts = directory.split("/")
            while parts and "/".join(parts) != stop_at and "/".join(parts).startswith(stop_at):
                parent, name = parts[:-1], parts[-1]
                try:
                    with self._dir(parent, make=False) as fd:
                        os.rmdir(name, dir_fd=fd)
                except OSError:  # not empty (or gone): stop climbing
                    break
                parts = parent

    def exists(self, rel: str) -> bool:
        parents, name = self._split(rel)
        try:
            with self._dir(parents, make=False) as directory:
                os.lstat(name, dir_fd=directory)
        except FileNotFoundError:
            return False
        return True

    def listdir(self, rel: str) -> list[str]:
        with self._noticing_loss(), self._dir(rel.split("/") if rel else [], make=False) as d:
            return sorted(os.listdir(d))

    def open_read(self, rel: str) -> int:
        """A read-only descriptor of a stored file (hashing what a command wrote)."""
        parents, name = self._split(rel)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        with self._noticing_loss(), self._dir(parents, make=False) as directory:
            return os.open(name, flags, dir_fd=directory)

    def free_bytes(self) -> int | None:
        """Room left for evidence; None when the file system does not say (``fusefat``
        reports a size of 0)."""
        st = os.statvfs(self._root)
        return st.f_bavail * st.f_frsize if st.f_blocks else None

    def sync(self, journal_only: bool = False) -> None:
        """Everything written so far onto stable storage: one ``syncfs`` for all files."""
        self.check()
        if not journal_only:
            syncfs_fd(self._root)

    def check(self) -> None:
        """Raise ``EvidenceLostError`` when the directory is no longer where it was made:
        deleted, moved away, replaced, or its drive gone."""
        try:
            if os.fstat(self._root).st_nlink == 0:
                raise EvidenceLostError(self._location, "the directory was deleted")
            now = os.stat(self._location, follow_symlinks=False)
        except FileNotFoundError as e:
            raise EvidenceLostError(self._location, "it is no longer there (moved?)") from e
        except OSError as e:
            raise EvidenceLostError(self._location, e.strerror or str(e)) from e
        if _identity(now) != self._identity or not stat.S_ISDIR(now.st_mode):
            raise EvidenceLostError(self._location, "another directory now has its name")

    def fsync_root(self) -> None:
        os.fsync(self._root)

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._dirs.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._dirs.clear()
        with contextlib.suppress(OSError):
            os.close(self._root)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino
