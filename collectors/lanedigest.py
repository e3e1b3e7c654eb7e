"""MD5 of many files at once, one file a SIMD lane (collectors/_md5lanes.c): the
``packages`` check of dpkg's ~100,000 MD5 sums, which hashlib does at ~0.8 GB/s a core.

The scheduler keeps every lane busy. A lane holds one file and a buffer of its own
(``LANE_BUFFER``); when a lane has hashed what it was given it is refilled from its file,
or, at the file's end, given the next file, so one large file holds one lane while the
others cycle through small ones, and results come back as files finish (not in the order
asked: the caller keys them by its tag). Memory is the lanes' buffers, a few MiB.

Files are opened and checked as every digest path does (``filedigest.open_checked``),
read with the same end-of-file rule (an MD5-only file by the lane itself, in C, the GIL
released; Python only opens and checks it), and an algorithm other than MD5 asked for the
same file (SHA-256 of executables) is fed from the same reads by hashlib. One scheduler
runs in the caller's thread (the other core is used by collectors/pkgforked.py, one
forked child a core): a second scheduler on another thread was measured slower on this
2-core machine (4.4-4.8 s against 3.6-4.0 s for the 110,000 dpkg files, load ~1.6) and
cost a third more CPU, the per-file Python of the two contending for the GIL
(bench/RESULTS.md).

``PRESERVE_MD5_ENGINE=avx512|avx2|scalar|hashlib`` forces an engine (tests, benches);
without it the best this CPU runs, or hashlib where the extension was not built."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .filedigest import Extra, Opened, Read, Want, hashers, open_checked, read_opened
from .source import open_flags

try:
    from . import _md5lanes  # type: ignore[attr-defined]
except ImportError:  # built without a compiler: hashlib does it
    _md5lanes = None

T = TypeVar("T")
ENGINES = ("avx512", "avx2", "scalar", "hashlib")
LANE_BUFFER = 64 * 1024  # a lane's reads: 16 lanes x 2 (C and Python) = 2 MiB


def available() -> tuple[str, ...]:
    """The engines this build and CPU run, best first (hashlib always)."""
    found = tuple(_md5lanes.engines()) if _md5lanes is not None else ()
    return (*found, "hashlib")


def md5_engine() -> str:
    """The engine to use: ``PRESERVE_MD5_ENGINE`` if this machine runs it, else the best
    one it does (a forced engine the CPU lacks falls back; the journal names what ran)."""
    runs = available()
    forced = os.environ.get("PRESERVE_MD5_ENGINE", "").strip().lower()
    return forced if forced in runs else runs[0]


class MD5Check:
    """The packages check's common case done whole in C, per file only system calls and
    hashing in the lanes, the GIL released (collectors/_md5check.c): each file opened as
    ``open_source`` opens it, checked, read with the same end-of-file rule and compared
    with the MD5 the database recorded. The caller does the files it names again through
    ``digest_files``, which gives their ``Read``.

    Files are numbered 0, 1, ... across the batches; a large file holds its lane on into
    the next batch (the lanes would otherwise wait for it at the end of each: a tenth of
    the files are 3 GB of the 5.4), so a batch's answer may name files of earlier ones,
    and says which are still in the lanes."""

    def __init__(self, engine: str) -> None:
        self.lanes = _md5lanes.Lanes(engine, LANE_BUFFER)
        self.flags, self.noatime = open_flags()

    def run(
        self, paths: list[bytes], md5s: list[bytes], if_exec: bytes | None, last: bool
    ) -> tuple[list[int], list[int]]:
        """Start every file of the batch (``md5s``: lowercase hex; ``if_exec[k]``: named
        where its mode has an execute bit), and with ``last`` end them all: the numbers of
        the files ended that are not a regular file read whole with that MD5, and of
        those still in the lanes."""
        named, held = self.lanes.check(paths, md5s, if_exec, self.flags, self.noatime, last)
        return named, held


def md5_check(engine: str) -> MD5Check | None:
    """The check in C for ``engine``; None for hashlib (every file through Python)."""
    return None if engine == "hashlib" or _md5lanes is None else MD5Check(engine)


_UNREADABLE = Read("unreadable", 0, None, {})


class _File:
    """What a lane is hashing: the caller's tag, the open file, the other digests."""

    __slots__ = ("tag", "opened", "others", "total", "carry", "buf", "view", "open")

    def __init__(self, tag: Any, opened: Opened, buf: bytearray, view: memoryview) -> None:
        self.tag = tag
        self.opened = opened
        names = opened.algorithms
        self.others = hashers(n for n in names if n != "md5") if len(names) > 1 else []
        self.total = 0  # bytes read
        self.carry = (0, 0)  # bytes past the last whole block: (offset, count)
        self.buf, self.view = buf, view
        self.open = True  # the descriptor, closed at the end of file (once)

    def close(self) -> None:
        if self.open:
            self.open = False
            os.close(self.opened.fd)

    def done(self, md5: bytes) -> Read:
        o = self.opened
        if not self.others:
            return Read("ok", o.stat.st_mode, o.stat, {"md5": md5.hex()}, o.xattr)
        got = {"md5": md5.hex(), **{n: h.hexdigest() for n, h in self.others}}
        digests = {n: got[n] for n in o.algorithms if n in got}
        return Read("ok", o.stat.st_mode, o.stat, digests, o.xattr)


class _Scheduler:
    """One ``Lanes`` object and its files, run in one thread."""

    def __init__(self, engine: str, extra: Extra | None) -> None:
        self.lanes = _md5lanes.Lanes(engine, LANE_BUFFER)
        self.extra = extra
        self.bufs = [bytearray(LANE_BUFFER) for _ in range(self.lanes.lanes)]
        self.views = [memoryview(b) for b in self.bufs]
        self.files: list[_File | None] = [None] * self.lanes.lanes

    def _start(self, lane: int, tag: Any, want: Want) -> Read | None:
        """Put a file on ``lane``; a ``Read`` if it is finished already (not read)."""
        opened = open_checked(want, self.extra)
        if isinstance(opened, Read):
            return opened
        if "md5" not in opened.algorithms:  # nothing for the lanes: hashlib, here
            return read_opened(opened)
        self.files[lane] = _File(tag, opened, self.bufs[lane], self.views[lane])
        if opened.algorithms == ("md5",):  # the lane reads it, with the GIL released
            self.lanes.feed_fd(lane, opened.fd, opened.stat.st_size)
            return None
        return self._pump(lane)

    def _pump(self, lane: int) -> Read | None:
        """Read the lane's next piece and hand it to the lane (the lane has used up the
        last one); an ``unreadable`` Read if reading fails."""
        f = self.files[lane]
        assert f is not None
        start, count = f.carry
        if count:  # the part block left over from a short read goes first
            f.buf[0:count] = f.buf[start : start + count]
        try:
            n = os.readv(f.opened.fd, [f.view[count:]])
        except OSError:
            self._close(lane)
            self.lanes.reset(lane)
            return Read("unreadable", 0, None, {})
        f.total += n
        if n:
            piece = f.view[count : count + n]
            for _, h in f.others:
                h.update(piece)
        have = count + n
        size = f.opened.stat.st_size
        # the end of file rule of filedigest._read_into: nothing more, or a short read at
        # or past the stat size (a size of 0 is read on to the end)
        if not n or (n < LANE_BUFFER - count and f.total >= size > 0):
            f.close()
            self.lanes.feed(lane, f.view[:have], True)
            return None
        whole = have - have % 64
        f.carry = (whole, have - whole)
        self.lanes.feed(lane, f.view[:whole])
        return None

    def _close(self, lane: int) -> None:
        f = self.files[lane]
        self.files[lane] = None
        if f is not None:
            f.close()

    def run(self, take: Iterator[tuple[T, Want | Read]]) -> Iterator[tuple[T, Read]]:
        """Every item of ``take`` with its result, as each finishes."""
        idle = list(range(self.lanes.lanes))
        more = True
        try:
            while True:
                while idle and more:
                    item = next(take, None)
                    if item is None:
                        more = False
                        break
                    tag, want = item
                    lane = idle[-1]
                    read = want if isinstance(want, Read) else self._start(lane, tag, want)
                    if read is not None:
                        self.files[lane] = None
                        yield tag, read
                    else:
                        idle.pop()
                if len(idle) == self.lanes.lanes:
                    return
                for lane, md5 in self.lanes.run():
                    f = self.files[lane]
                    assert f is not None
                    if md5 is None:
                        read = self._pump(lane)
                    else:
                        f.close()
                        read = f.done(md5) if isinstance(md5, bytes) else _UNREADABLE
                    if read is not None:
                        self.files[lane] = None
                        idle.append(lane)
                        yield f.tag, read
        finally:
            for lane in range(self.lanes.lanes):
                if self.files[lane] is not None:
                    self._close(lane)
                    self.lanes.reset(lane)


def digest_lanes(
    items: Iterable[tuple[T, Want | Read]],
    extra: Extra | None = None,
    engine: str | None = None,
) -> Iterator[tuple[T, Read]]:
    """Each ``(tag, want)`` of ``items`` with what reading its file gave, as each file
    finishes; the MD5 in lanes of ``engine`` (the best one by default)."""
    engine = engine or md5_engine()
    if engine == "hashlib":
        from .filedigest import digest_files

        yield from digest_files(items, extra)
        return
    yield from _Scheduler(engine, extra).run(iter(items))
