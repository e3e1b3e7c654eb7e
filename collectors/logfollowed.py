"""The followed logs, shared by every thread of the watch: ``FollowedLogs``.

One table of ``TrackedLog`` by ``(device, inode)`` (and by current name), under one lock
that the main loop, watchdog's thread, the follow thread and the truncation guard's thread
all take. Whoever looks at a log does it through ``poll`` here, which hands on what the
log returns: events and errors are journalled at once, increments go to an outbox that
``store`` writes out *outside* the lock, so that a guarded or hot read never waits for a
disk write.

It also answers the truncation guard (``collectors/truncation_guard.py``), whose callbacks
run while another process waits on a followed log: read that log to its end first, and
arm it (its truncation then waits too) or, where the kernel cannot, mark it hot (polled
without pause for ``HOT_SECONDS``). A callback waits for the lock at most ``GUARD_WAIT``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

from .context import CollectContext
from .logtrack import POLL_READ, Increment, Key, LogEvent, TrackedLog
from .pathmap import describe
from .truncation_guard import TruncationGuard

NAME = "logs"
HOT_SECONDS = 1.0  # how long a log is polled without pause once a rotation of it starts
GUARD_WAIT = 0.5  # seconds a guarded open or truncation waits for the watch, at most
GUARD_READ = 64 << 20  # bytes read for one guarded open or truncation, at most
ARM_SECONDS = 5.0  # truncations wait this long after another process opened the log,
ARM_RATE = 10 << 20  # plus the time to copy the log at this rate (copytruncate's copy)


@dataclass
class WatchStats:
    increments: int = 0
    bytes: int = 0
    events: dict[str, int] = field(default_factory=dict)
    followed: int = 0
    seals: int = 0
    guarded_opens: int = 0
    guarded_accesses: int = 0
    guard_timeouts: int = 0  # callbacks that let the other process go unread (busy lock)
    unguarded: int = 0  # followed logs the guard could not mark

    def count(self, what: str) -> None:
        self.events[what] = self.events.get(what, 0) + 1


class FollowedLogs:
    """The methods that look at a log or change the table expect the caller to hold
    ``lock``; ``store``, ``disarm`` and the guard's callbacks take it themselves."""

    def __init__(self, ctx: CollectContext, stats: WatchStats, max_pending: int) -> None:
        self.ctx = ctx
        self.stats = stats
        self.max_pending = max_pending
        self.tracks: dict[Key, TrackedLog] = {}
        self.by_path: dict[bytes, TrackedLog] = {}
        # Guards every log: the main loop, watchdog's thread (prompt reads of renamed and
        # new files), the follow thread and the guard's thread all take it.
        self.lock = threading.RLock()
        self.closing = threading.Event()
        self.hot: set[Key] = set()  # polled without pause until their hot_until
        self.heated = threading.Event()  # wakes the follow thread when a log turns hot
        self.guard = TruncationGuard(self._guarded_open, self._guarded_access)
        self._outbox: list[Increment] = []

    # -- the table ---------------------------------------------------------------------

    def add(self, log: TrackedLog) -> None:
        self.tracks[log.key] = log
        self.by_path[log.path] = log
        self.stats.followed += 1
        if self.guard.active and not self.guard.watch(log.fd):
            self.stats.unguarded += 1  # the kernel's mark limit, say: polled only

    def current(self, log: TrackedLog) -> bool:
        """Still followed (not untracked meanwhile by another thread)."""
        return self.tracks.get(log.key) is log

    def rename(self, log: TrackedLog, new: bytes) -> None:
        """The log's name is now ``new``: what was read under the old name is cut first."""
        self.poll(log)
        self.flush(log)
        previous = log.path
        if self.by_path.get(previous) is log:
            del self.by_path[previous]
        log.path = new
        self.by_path[new] = log
        self.record(log.event("renamed", old=describe(previous)))

    def untrack(self, log: TrackedLog) -> None:
        self.tracks.pop(log.key, None)
        if self.by_path.get(log.path) is log:
            del self.by_path[log.path]
        self.hot.discard(log.key)
        if log.armed_until:
            self.guard.disarm(log.fd)
        self.guard.unwatch(log.fd)  # an inode mark outlives the descriptor
        with contextlib.suppress(OSError):
            os.close(log.fd)

    def heat(self, logs: Iterable[TrackedLog], until: float) -> bool:
        """Poll these logs without pause until ``until`` (or their next truncation)."""
        heated = False
        for log in logs:
            log.hot_until = until
            self.hot.add(log.key)
            heated = True
        if heated:
            self.heated.set()
        return heated

    def disarm(self, log: TrackedLog) -> None:
        """The log's armed time is up: its truncations no longer wait for the watch."""
        with self.lock:
            if log.armed_until and self.current(log):
                self.guard.disarm(log.fd)
                log.armed_until = 0.0

    # -- reading and handing over ------------------------------------------------------

    def poll(self, log: TrackedLog, drain: bool = False, budget: int = POLL_READ) -> None:
        look = log.poll(self.max_pending, drain=drain, budget=budget)
        self._outbox += look.increments
        for note in look.notes:
            if isinstance(note, LogEvent):
                self.record(note)
            else:
                self.ctx.error(NAME, note.reason, note.path)
        if look.unlinked and self.by_path.get(log.path) is log:
            del self.by_path[log.path]
        if look.expired:
            self.untrack(log)

    def flush(self, log: TrackedLog) -> None:
        increment = log.cut()
        if increment is not None:
            self._outbox.append(increment)

    def drain_all(self) -> None:
        """The watch ends: read every log to its end, hand it over, close it."""
        for log in list(self.tracks.values()):
            self.poll(log, drain=True)
            self.flush(log)
        for log in list(self.tracks.values()):
            self.untrack(log)

    def record(self, event: LogEvent) -> None:
        self.stats.count(event.what)
        self.ctx.journal.append("event", collector=NAME, what=event.what, **event.fields)

    def store(self) -> None:
        """Write out the increments cut so far (takes the lock only to take them)."""
        with self.lock:
            items, self._outbox = self._outbox, []
        for rel, data, fields in items:
            # The bytearray itself, not a copy: store_bytes only reads it as a buffer.
            stored = self.ctx.engine.store_bytes(rel, cast(bytes, data), NAME, **fields)
            if stored is not None:
                self.stats.increments += 1
                self.stats.bytes += len(data)

    def begin_close(self) -> None:
        """From here on nobody waits for the watch, and the follow thread stops."""
        self.closing.set()
        self.guard.close()
        self.heated.set()

    # -- the guard's callbacks (in its thread, while another process waits) -------------

    def probe_guard(self, unguarded: str | None) -> str:
        """What the guard does here (``truncation_guard`` in the journal), tried on a log."""
        if unguarded is not None:
            return f"off: {unguarded}"
        probe = next(iter(self.tracks.values()), None)
        if probe is None:
            return "opens; truncations where the kernel allows"
        if self.guard.arm(probe.fd, probe.key[0]):
            self.guard.disarm(probe.fd)
            return "opens and truncations"
        return "opens only: truncations need Linux 6.14+ on ext4, xfs or btrfs"

    @contextlib.contextmanager
    def _waited_for(self, key: Key) -> Iterator[TrackedLog | None]:
        """The followed log another process waits on, under the lock; None when it is not
        followed, the watch is closing, or the lock stays busy for ``GUARD_WAIT`` (the
        process then goes on unread: counted, never held longer)."""
        if not self.lock.acquire(timeout=GUARD_WAIT):
            self.stats.guard_timeouts += 1
            yield None
            return
        try:
            log = self.tracks.get(key)
            yield None if self.closing.is_set() else log
        finally:
            self.lock.release()

    def _guarded_open(self, key: Key, pid: int) -> None:
        """Another process opens a followed log: it may be about to truncate it (``>``,
        or logrotate's ``copytruncate`` once it has copied it). Make its truncation wait
        for the watch too (arm), or failing that poll the log without pause for a moment;
        then read it to the end before the open goes on."""
        with self._waited_for(key) as log:
            if log is None:
                return
            self.stats.guarded_opens += 1
            now = time.monotonic()
            if log.first_open(pid, now):
                if log.armed_until > now or self.guard.arm(log.fd, key[0]):
                    log.armed_until = now + ARM_SECONDS + log.offset / ARM_RATE
                else:  # no pre-content events (a kernel before 6.14, or tmpfs)
                    self.heat([log], now + HOT_SECONDS)
            self.poll(log, budget=GUARD_READ)

    def _guarded_access(self, key: Key, pid: int) -> None:
        """An armed log is about to be truncated (or read or written through a descriptor
        opened while it was armed): take every byte that is there first."""
        with self._waited_for(key) as log:
            if log is not None:
                self.stats.guarded_accesses += 1
                self.poll(log, budget=GUARD_READ)
