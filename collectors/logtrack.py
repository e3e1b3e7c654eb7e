"""One followed log, reading itself: ``TrackedLog``.

A tracked log is held **open** and known by ``(device, inode)``, with the offset up to which
its bytes have been read; its name is only a label (a rotated, compressed-away or deleted
file is still read to its last byte through the descriptor). ``poll`` looks at it once and
returns a ``Look``: the increments cut (bytes to store, with their byte range) and the
events (truncated, deleted) for the caller to journal and store. A tracked log never
touches the journal, the copy engine or the other logs: whoever holds the watch's lock
calls it and hands on what it returns (``collectors/logfollowed.py``).

Truncation is noticed when the size drops below the offset, or when the bytes just before
the offset no longer match what was read (truncated and refilled between two looks:
compared whenever the size or the modification time changed); reading then restarts at 0.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .pathmap import describe, stored_relpath
from .stat_record import stat_fields

Key = tuple[int, int]  # (device, inode)
COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".lzma", ".z", ".zip")
READ_CHUNK = 1 << 20
POLL_READ = 16 << 20  # bytes one ordinary look reads, at most (the next look goes on)
TAIL = 64  # bytes compared before the offset to notice truncate-and-refill
DELETED_GRACE = 30.0  # seconds a deleted file is still followed after its last growth
REOPEN_QUIET = 60.0  # a process's open arms a log again only after this long without one


class Increment(NamedTuple):
    """Bytes cut from a log, to be stored as one ``log-increment`` artifact."""

    relpath: str
    data: bytearray
    fields: dict[str, Any]


class LogEvent(NamedTuple):
    """An ``event`` record to journal (``what``: truncated, deleted, renamed, ...)."""

    what: str
    fields: dict[str, Any]


class ReadFailed(NamedTuple):
    """A read that failed while following: an ``error`` record."""

    reason: str
    path: bytes


@dataclass
class Look:
    """What one look at a log found. Notes are in the order they happened."""

    increments: list[Increment] = field(default_factory=list)
    notes: list[LogEvent | ReadFailed] = field(default_factory=list)
    unlinked: bool = False  # its last name went away at this look (the file stays open)
    expired: bool = False  # deleted and quiet for DELETED_GRACE: stop following it

    def cut(self, increment: Increment | None) -> None:
        if increment is not None:
            self.increments.append(increment)


def key_of(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


@dataclass
class TrackedLog:
    key: Key
    fd: int
    path: bytes
    offset: int  # bytes read (kept in memory or stored)
    compressed: bool
    pending: bytearray = field(default_factory=bytearray)
    pending_since: float = 0.0
    last_growth: float = 0.0
    tail: bytes = b""
    mtime_ns: int = 0  # of the file when it was last looked at
    hot_until: float = 0.0
    truncations: int = 0
    next_poll: float = 0.0
    armed_until: float = 0.0  # truncations wait for the watch until then (guard)
    opened_by: dict[int, float] = field(default_factory=dict)  # pid -> last open (guard)
    # Inode numbers are reused once a file is gone: the n-th file seen with this
    # (device, inode) in this run. The initial pass's copies are generation 0.
    generation: int = 0
    deleted: bool = False

    @classmethod
    def opened(cls, fd: int, key: Key, path: bytes, offset: int, generation: int) -> TrackedLog:
        """Follow the file open at ``fd``, whose bytes up to ``offset`` are already kept."""
        compressed = path.lower().endswith(tuple(s.encode() for s in COMPRESSED))
        log = cls(
            key, fd, path, offset, compressed, last_growth=time.monotonic(), generation=generation
        )
        if offset:
            with contextlib.suppress(OSError):
                log.tail = os.pread(fd, min(TAIL, offset), offset - min(TAIL, offset))
        return log

    @property
    def pending_start(self) -> int:
        return self.offset - len(self.pending)

    def event(self, what: str, **fields: Any) -> LogEvent:
        """An event about this log, naming its inode and generation."""
        return LogEvent(
            what,
            {
                **describe(self.path),
                "dev": str(self.key[0]),
                "ino": str(self.key[1]),
                "generation": self.generation,
                **fields,
            },
        )

    # -- looking -----------------------------------------------------------------------

    def unchanged(self) -> bool:
        """Nothing written, truncated or unlinked since the last look: one fstat, no lock.
        A descriptor closed (and its number reused) meanwhile only makes this False: the
        poll then checks."""
        try:
            st = os.fstat(self.fd)
        except OSError:
            return False
        return (
            st.st_size == self.offset
            and st.st_mtime_ns == self.mtime_ns
            and st.st_nlink > 0
            and not self.deleted
        )

    def _truncated(self, st: os.stat_result) -> bool:
        size = st.st_size
        if size < self.offset:
            return True
        if not self.tail or (size == self.offset and st.st_mtime_ns == self.mtime_ns):
            return False  # nothing written since the last look (the common case)
        try:
            here = os.pread(self.fd, len(self.tail), self.offset - len(self.tail))
        except OSError:
            return False
        return here != self.tail

    def poll(self, max_pending: int, drain: bool = False, budget: int = POLL_READ) -> Look:
        """Look once: notice a truncation or deletion, read what was appended (at most
        ``budget`` bytes, everything when ``drain`` or once the file is deleted). Pending
        bytes beyond ``max_pending`` (eight times that for a compressed file, stored
        whole) are cut as they are read."""
        look = Look()
        try:
            st = os.fstat(self.fd)
        except OSError:
            return look
        if self._truncated(st):
            look.cut(self.cut())
            look.notes.append(self.event("truncated", was=str(self.offset), size=str(st.st_size)))
            self.truncations += 1
            self.offset = 0
            self.tail = b""
        if st.st_size > self.offset:  # else nothing new: the common case, kept cheap
            self._read(look, None if drain or st.st_nlink == 0 else budget, max_pending)
        self.mtime_ns = st.st_mtime_ns
        if st.st_nlink == 0 and not self.deleted:
            # Kept open: a writer that still holds the file (an intruder's daemon, a
            # logger not yet told about the rotation) may go on writing into it.
            self.deleted = True
            look.cut(self.cut())
            look.notes.append(self.event("deleted", size=str(self.offset)))
            look.unlinked = True
        elif self.deleted and time.monotonic() - self.last_growth > DELETED_GRACE:
            look.cut(self.cut())
            look.expired = True
        return look

    def _read(self, look: Look, budget: int | None, max_pending: int) -> None:
        got = 0
        while budget is None or got < budget:
            want = READ_CHUNK if budget is None else min(READ_CHUNK, budget - got)
            try:
                data = os.pread(self.fd, want, self.offset)
            except OSError as e:
                look.notes.append(
                    ReadFailed(f"read failed while following: {e.strerror}", self.path)
                )
                return
            if not data:
                break
            if not self.pending:
                self.pending_since = time.monotonic()
            self.pending += data
            self.offset += len(data)
            self.last_growth = time.monotonic()
            self.tail = (self.tail + data[-TAIL:])[-TAIL:]
            got += len(data)
            if len(self.pending) >= max_pending * (8 if self.compressed else 1):
                look.cut(self.cut())

    # -- handing bytes over ------------------------------------------------------------

    def flush_due(self, now: float, flush_interval: float, settle: float, max_pending: int) -> bool:
        """Pending bytes are due to be stored: held ``flush_interval`` (a compressed file:
        once it stopped growing for ``settle``, so that it is stored whole), or too many."""
        if not self.pending:
            return False
        if self.compressed:
            due = now - self.last_growth >= settle
        else:
            due = now - self.pending_since >= flush_interval
        return due or len(self.pending) >= max_pending * 8

    def cut(self) -> Increment | None:
        """Hand the pending bytes over (not copied) as an increment; None if there are none."""
        if not self.pending:
            return None
        start, end = self.pending_start, self.offset
        data, self.pending = self.pending, bytearray()
        try:
            st = stat_fields(os.fstat(self.fd))
        except OSError:
            st = {"dev": str(self.key[0]), "ino": str(self.key[1])}
        gen = f"g{self.generation}" if self.generation else ""
        rel = f"artifacts/watch/{stored_relpath(self.path)}/i{self.key[1]}{gen}_{start}-{end}"
        fields = {
            "kind": "log-increment",
            "source": {**describe(self.path), "stat": st},
            "range": {"offset": start, "end": end},
            "generation": self.generation,
        }
        return Increment(rel, data, fields)

    def first_open(self, pid: int, now: float) -> bool:
        """A process's first open of the log in a while. Only those arm (or heat) it: a
        logger that reopens its file for every line would otherwise keep it armed, and
        every later descriptor on it would then wait for the watch at each write."""
        last = self.opened_by.get(pid)
        self.opened_by[pid] = now
        if len(self.opened_by) > 64:
            for old in sorted(self.opened_by, key=self.opened_by.__getitem__)[:32]:
                del self.opened_by[old]
        return last is None or now - last > REOPEN_QUIET
