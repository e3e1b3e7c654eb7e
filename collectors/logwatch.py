"""Following logs after the initial pass (``--watch``): nothing appended, rotated away,
truncated or deleted is lost while the responder works.

``LogWatcher`` is the watch as ``agent/watch.py`` drives it (``start``, ``run``, ``close``);
the work is done by four objects, each in its own module:

* ``TrackedLog`` (``logtrack.py``): one followed log, held **open** and known by
  ``(device, inode)`` with the offset up to which its bytes are kept; it reads itself and
  notices truncations and deletions, returning increments and events.
* ``FollowedLogs`` (``logfollowed.py``): the table of followed logs every thread shares,
  under one lock; journals events at once, stores increments outside the lock, and
  answers the truncation guard (``truncation_guard.py``): where the kernel allows it
  (root), another process's open of a followed log, and on Linux 6.14+ its truncation,
  waits until the watch has read the log to its end.
* ``Discovery`` (``logdiscovery.py``): watchdog events and rescans find new, renamed and
  deleted files; a rotated name appearing makes its directory's logs hot.
* ``Scheduler`` (``logscheduler.py``): the follow thread polls each log at its due time
  (a growing one every ``active_poll``, a quiet one every ``idle_poll``, a hot one without
  pause), and pending bytes are cut into increments every ``flush_interval``.

The journal is sealed every ``seal_interval`` seconds and when the watch ends. The two
process-wide settings the watch needs (the open-file limit, the interpreter's switch
interval) are changed in ``process_settings.py`` only, and put back by ``close``.
Dependencies run one way: logtrack <- logfollowed <- logdiscovery, logscheduler <- here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from manifests.journal_reader import iter_records

from .context import CollectContext
from .logdiscovery import Discovery
from .logfollowed import NAME, FollowedLogs, WatchStats
from .logprofile import LogSource
from .logscheduler import Scheduler
from .logtrack import Key, TrackedLog
from .pathmap import describe
from .process_settings import ProcessSettings


def preserved_offsets(journal_path: os.PathLike[str] | str) -> dict[tuple[int, int], int]:
    """(device, inode) -> end of the bytes already stored, from the run's own journal,
    read through the one journal parser (a line still being written ends the read)."""
    known: dict[tuple[int, int], int] = {}
    for record in iter_records(journal_path):
        source = record.get("source") or {}
        st = source.get("stat") if isinstance(source, dict) else None
        rng = record.get("range")
        if record.get("type") != "artifact" or not st or not rng:
            continue
        key = (int(st["dev"]), int(st["ino"]))
        known[key] = max(known.get(key, 0), int(rng["end"]))
    return known


class LogWatcher:
    def __init__(
        self,
        ctx: CollectContext,
        sources: list[LogSource],
        flush_interval: float = 1.0,
        seal_interval: float = 10.0,
        active_poll: float = 0.05,
        idle_poll: float = 0.1,
        rescan_interval: float = 5.0,
        periodic_interval: float = 1.0,
        batch: float = 0.005,
        tick: float = 0.2,
        max_pending: int = 8 << 20,
        settle: float = 1.0,
    ) -> None:
        self.ctx = ctx
        self.sources = sources
        self.seal_interval = seal_interval
        self.rescan_interval = rescan_interval
        self.periodic_interval = periodic_interval
        self.batch = batch  # pause after queued paths, so that a burst gathers into one pass
        self.tick = tick
        self.stats = WatchStats()
        self.guard_mode = "off"
        self._sealed_seq = -1
        self._settings = ProcessSettings()
        self._followed = FollowedLogs(ctx, self.stats, max_pending)
        self._discovery = Discovery(ctx, sources, self._followed)
        self._scheduler = Scheduler(
            self._followed, self._settings, active_poll, idle_poll, flush_interval, settle
        )

    @property
    def tracks(self) -> dict[Key, TrackedLog]:
        """The followed logs by (device, inode)."""
        return self._followed.tracks

    def directories(self) -> list[bytes]:
        return self._discovery.directories()

    def start(self) -> None:
        fd_limit = self._settings.apply()
        unguarded = self._followed.guard.start()
        journal = self.ctx.journal.path
        assert journal is not None, "a local evidence directory's journal (the only kind yet)"
        known = preserved_offsets(journal)
        inotify = self._discovery.start(known, fd_limit)
        if not inotify:
            self.rescan_interval = min(self.rescan_interval, 1.0)
        # Events from here on are queued; the scan below then cannot miss a file.
        self._discovery.rescan(initial=True)
        self.guard_mode = self._followed.probe_guard(unguarded)
        self._scheduler.start()
        self.ctx.journal.append(
            "event",
            collector=NAME,
            what="watch-started",
            directories=[describe(d) for d in self.directories()],
            followed=len(self.tracks),
            inotify=inotify,
            truncation_guard=self.guard_mode,
        )

    def run(self, duration: float, stopped: Callable[[], bool]) -> None:
        """The main loop: new names, rescans, increments stored, periodic checks, seals."""
        now = time.monotonic()
        until = now + duration
        next_rescan = now + self.rescan_interval
        next_periodic = now
        next_seal = now + self.seal_interval
        while not stopped() and not self.ctx.engine.full.is_set():
            now = time.monotonic()
            if now >= until:
                break
            queued = self._discovery.handle_queued(timeout=min(self.tick, until - now))
            now = time.monotonic()
            if now >= next_rescan:
                self._discovery.rescan()
                next_rescan = time.monotonic() + self.rescan_interval
            self._scheduler.flush_due(time.monotonic())
            self._followed.store()
            if now >= next_periodic:
                self._run_periodic()
                next_periodic = now + self.periodic_interval
            if now >= next_seal:
                self._seal("watch")
                next_seal = now + self.seal_interval
            if queued:
                time.sleep(self.batch)

    def close(self, reason: str) -> None:
        """Stop watching; read every followed file to its end, store it, seal."""
        try:
            self._discovery.stop()
            self._followed.begin_close()
            self._scheduler.join()
            with self._followed.lock:
                self._discovery.drain()
                self._followed.drain_all()
            self._followed.store()
        finally:
            self._settings.restore()
        self.ctx.engine.drain()
        self.ctx.journal.append(
            "event",
            collector=NAME,
            what="watch-ended",
            reason=reason,
            increments=self.stats.increments,
            bytes=self.stats.bytes,
            events=dict(sorted(self.stats.events.items())),
            truncation_guard=self.guard_mode,
            guarded_opens=self.stats.guarded_opens,
            guarded_accesses=self.stats.guarded_accesses,
            guard_timeouts=self.stats.guard_timeouts,
            unguarded_logs=self.stats.unguarded,
        )
        self._seal("watch ended")
        self._discovery.join()

    def _run_periodic(self) -> None:
        for callback in list(self.ctx.periodic):
            try:
                callback()
            except Exception as e:  # a broken check must not end the watch
                self.ctx.log.warning("periodic_failed", error=f"{type(e).__name__}: {e}")

    def _seal(self, reason: str) -> None:
        if self.ctx.journal.next_seq - 1 != self._sealed_seq:
            self.ctx.journal.seal(reason)
            self._sealed_seq = self.ctx.journal.next_seq - 1
            self.stats.seals += 1
