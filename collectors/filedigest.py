"""Digests of many host files, each read once, as fast as this machine hashes: what the
``packages`` collector (MD5 of ~100,000 package files) and the ``executables``
collector (SHA-256 of every executable) spend their time on.

Per file: one ``open`` (``collectors.source``: no symlink followed, no FIFO blocked on),
one ``fstat``, and reads into a buffer each thread keeps (``os.readv``), every read fed
to every digest asked for, so a file both collectors want is read once
(``collectors/rundigests.py``). The reading stops at the first short read once the
``fstat`` size is reached, which on a regular file is its end, so a small file costs one
read, not two (a file whose stat says 0 bytes is read on to the end). ``hashlib`` and
the reads release the GIL, so the threads hash on every core; files go to them in
chunks, not one by one, because a future per file costs more than hashing most package
files. Results come back in the order asked, with a bounded number of chunks in flight
(memory does not grow with the number of files)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, NamedTuple, TypeVar

from .source import open_source

T = TypeVar("T")
BUFFER = 1024 * 1024  # bytes read at once: large enough that hashlib releases the GIL
CHUNK = 64  # files handed to a thread at once
WORKERS = max(2, min(4, os.cpu_count() or 2))
_CONSTRUCTORS: dict[str, Callable[[], Any]] = {
    "md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}  # fmt: skip


class Want(NamedTuple):
    """One file to digest: its host path, the algorithms (hashlib names), the identity
    (``st_dev``, ``st_ino``) it must still have, if a walk saw it, and an extended
    attribute to read through the same descriptor (``security.capability``)."""

    path: bytes
    algorithms: tuple[str, ...]
    seen: tuple[int, int] | None = None
    xattr: str | None = None


class Read(NamedTuple):
    """What reading one file gave. ``state``: ``ok``, ``missing``, ``not-regular`` (a
    symlink, a directory, a FIFO where a file was expected), ``changed`` (no longer the
    inode the walk saw) or ``unreadable`` (or a caller's own, for a file it passed
    over). ``digests``: hex digest by algorithm, only when ``ok`` (an algorithm this
    Python lacks is left out). ``xattr``: the asked
    attribute's value, None where the file has none (or it was not asked, or not ok)."""

    state: str
    mode: int
    stat: os.stat_result | None
    digests: dict[str, str]
    xattr: bytes | None = None


# Extra algorithms for a file, decided once its stat is known (e.g. SHA-256 of the
# executables among package files): called in a worker thread with (Want, stat).
Extra = Callable[[Want, os.stat_result], tuple[str, ...]]

_local = threading.local()


def _buffer() -> tuple[list[bytearray], memoryview]:
    """This thread's read buffer, allocated once per thread."""
    held = getattr(_local, "held", None)
    if held is None:
        buf = bytearray(BUFFER)
        held = _local.held = ([buf], memoryview(buf))
    return held


def _hasher(algorithm: str) -> Any:
    constructor = _CONSTRUCTORS.get(algorithm)
    if constructor is not None:
        return constructor()
    try:
        return hashlib.new(algorithm)
    except ValueError:  # an algorithm this Python lacks: the caller sees no digest
        return None


class Opened(NamedTuple):
    """A file ready to read: checked (regular, still the inode the walk saw), with the
    algorithms it gets and its attribute read. The caller reads and closes ``fd``."""

    fd: int
    stat: os.stat_result
    algorithms: tuple[str, ...]
    xattr: bytes | None


def open_checked(want: Want, extra: Extra | None = None) -> Opened | Read:
    """The one way a digest path opens a host file (``open_source``: no symlink followed,
    no FIFO blocked on; then ``fstat`` and the checks). A ``Read`` where it is not to be
    read (missing, not regular, changed, unreadable): nothing is then left open."""
    try:
        fd = open_source(want.path)
    except FileNotFoundError:
        return Read("missing", 0, None, {})
    except OSError as e:
        if e.errno == errno.ELOOP:  # a symlink where a file was expected
            return Read("not-regular", stat.S_IFLNK, None, {})
        return Read("unreadable", 0, None, {})
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return Read("not-regular", st.st_mode, st, {})
        if want.seen is not None and (st.st_dev, st.st_ino) != want.seen:
            os.close(fd)
            return Read("changed", st.st_mode, st, {})
        names = want.algorithms + extra(want, st) if extra is not None else want.algorithms
        value = _xattr(fd, want.xattr) if want.xattr is not None else None
    except OSError:
        os.close(fd)
        return Read("unreadable", 0, None, {})
    return Opened(fd, st, names, value)


def hashers(names: Iterable[str]) -> list[tuple[str, Any]]:
    """A hashlib object for each algorithm this Python has (the others are left out)."""
    return [(name, h) for name in names if (h := _hasher(name)) is not None]


def digest_one(want: Want, extra: Extra | None = None) -> Read:
    """Open, check and read one file (in the calling thread)."""
    opened = open_checked(want, extra)
    if isinstance(opened, Read):
        return opened
    return read_opened(opened)


def read_opened(opened: Opened) -> Read:
    """Read and hash a file ``open_checked`` gave, and close it."""
    fd, st, names, value = opened
    try:
        found = hashers(names)
        _read_into(fd, st.st_size, [h for _, h in found])
        digests = {name: h.hexdigest() for name, h in found}
        return Read("ok", st.st_mode, st, digests, value)
    except OSError:
        return Read("unreadable", 0, None, {})
    finally:
        os.close(fd)


def _xattr(fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(fd, name)
    except OSError:  # ENODATA: none; ENOTSUP: a file system without them
        return None


def _read_into(fd: int, size: int, hashers: list[Any]) -> None:
    bufs, view = _buffer()
    readv = os.readv
    total = 0
    while True:
        n = readv(fd, bufs)
        if not n:
            return
        total += n
        data = view if n == BUFFER else view[:n]
        for h in hashers:
            h.update(data)
        if n < BUFFER and total >= size > 0:
            # a short read at or past the stat size: the end of a regular file (a size of
            # 0, as pseudo-files under a bind mount say, is read on to the end)
            return


def _digest_chunk(chunk: list[tuple[T, Want | Read]], extra: Extra | None) -> list[Read]:
    return [w if isinstance(w, Read) else digest_one(w, extra) for _, w in chunk]


def digest_files(
    items: Iterable[tuple[T, Want | Read]],
    extra: Extra | None = None,
    workers: int = WORKERS,
    md5_engine: str = "hashlib",
) -> Iterator[tuple[T, Read]]:
    """Each ``(tag, want)`` of ``items`` with what reading its file gave, in order; the
    tag is the caller's (what it needs to judge the result). An item whose result is
    already known (a digest handed on by ``rundigests``) is given as that ``Read`` and
    passes through in its place, so the order holds. With an ``md5_engine`` other than
    hashlib (``lanedigest.md5_engine()``), MD5 is done in SIMD lanes and results come
    in the order files finish instead (collectors/lanedigest.py)."""
    if md5_engine != "hashlib":
        from .lanedigest import digest_lanes

        yield from digest_lanes(items, extra, md5_engine)
        return
    source = iter(items)
    pending: deque[tuple[list[tuple[T, Want | Read]], Future[list[Read]]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="digest") as pool:
        while True:
            while len(pending) < 4 * workers:
                chunk = list(islice(source, CHUNK))
                if not chunk:
                    break
                pending.append((chunk, pool.submit(_digest_chunk, chunk, extra)))
            if not pending:
                return
            chunk, future = pending.popleft()
            for (tag, _), read in zip(chunk, future.result(), strict=True):
                yield tag, read
