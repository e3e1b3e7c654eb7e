"""Following logs after the initial pass (``--watch``): nothing appended, rotated away,
truncated or deleted is lost while the responder works.

How it keeps everything:

* Every followed log is held **open**, tracked by ``(device, inode)`` with the offset up to
  which its bytes are kept. A rotated (renamed), compressed-away or deleted file can still
  be read to its last byte through that descriptor; the name is only a label.
* A follow thread looks at every log: one that grew lately every ``active_poll``
  seconds, a quiet one every ``idle_poll``. Appended bytes are read into memory and
  written out as one ``artifact`` (kind ``log-increment``, with source inode and byte
  range) per file at a bounded cadence (``flush_interval``), so a busy log does not make
  thousands of tiny artifacts. Polling costs the same whatever the write rate; an inotify
  event per write (a thousand a second on a busy server) cost more than all the rest.
* watchdog (inotify on Linux) reports new, renamed and deleted files at once; a periodic
  rescan catches anything an event missed.
* Truncation must not win a race against the poll: where the kernel allows it (root),
  ``truncation_guard`` makes another process's open of a followed log, and on Linux 6.14+
  its truncation, wait until the watch has read the log to its end. Without it, a rotated
  name appearing or another process opening the log makes the watch poll that log
  without pause for a moment (``HOT_SECONDS``).
* Truncation is noticed when the size drops below the offset, or when the bytes just
  before the offset no longer match what was read (the file was truncated and refilled
  between two looks: checked whenever the size or the modification time changed);
  reading restarts at 0.
* Renames, truncations, deletions and new files (compressed generations included) are
  ``event`` records naming the inode, so the lab can rebuild each log's history.
* The journal is sealed every ``seal_interval`` seconds and when the watch ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from .context import CollectContext
from .copy import open_source
from .logprofile import LogSource
from .pathmap import describe, stored_relpath
from .stat_record import stat_fields
from .truncation_guard import TruncationGuard
from .walk import walk

NAME = "logs"
COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".lzma", ".z", ".zip")
READ_CHUNK = 1 << 20
TAIL = 64  # bytes compared before the offset to notice truncate-and-refill
_QUIET_EVENTS = {"opened", "closed_no_write"}
# Only what changes names: content changes are found by polling (see the module's doc).
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
_ROTATED = re.compile(rb"([.-](\d+|\d{4}-?\d{2}-?\d{2}(-?\d{2,6})?))$")  # .1, -20261127
HOT_SECONDS = 1.0  # how long a log is polled without pause once a rotation of it starts
IDLE_AFTER = 2.0  # a log that has not grown for this long is polled every idle_poll
QUIET_POLLS = 2000  # looks a second shared by the quiet logs, at most (beyond 200 logs)
GUARD_WAIT = 0.5  # seconds a guarded open or truncation waits for the watch, at most
GUARD_READ = 64 << 20  # bytes read for one guarded open or truncation, at most
ARM_SECONDS = 5.0  # truncations wait this long after another process opened the log,
ARM_RATE = 10 << 20  # plus the time to copy the log at this rate (copytruncate's copy)
REOPEN_QUIET = 60.0  # a process's open arms a log again only after this long without one
DELETED_GRACE = 30.0  # seconds a deleted file is still followed after its last growth
HOT_PAUSE = 0.0001  # seconds between two polls of a hot log, at most (interpreter switch)
WATCH_SWITCH = 0.0005  # interpreter switch interval during the watch (default 0.005)


@dataclass
class Track:
    key: tuple[int, int]
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

    @property
    def pending_start(self) -> int:
        return self.offset - len(self.pending)


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


def _key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def preserved_offsets(journal_path: os.PathLike[str] | str) -> dict[tuple[int, int], int]:
    """(device, inode) -> end of the bytes already stored, from the run's own journal."""
    known: dict[tuple[int, int], int] = {}
    with open(journal_path, "rb") as f:
        for line in f:
            if b'"artifact"' not in line:
                continue
            record = json.loads(line)
            source = record.get("source") or {}
            st = source.get("stat") if isinstance(source, dict) else None
            rng = record.get("range")
            if record.get("type") != "artifact" or not st or not rng:
                continue
            key = (int(st["dev"]), int(st["ino"]))
            known[key] = max(known.get(key, 0), int(rng["end"]))
    return known


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _QUIET_EVENTS:
            return
        self._sink(os.fsencode(event.src_path))
        dest = getattr(event, "dest_path", "")
        if dest:
            self._sink(os.fsencode(dest))


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
        self.flush_interval = flush_interval
        self.seal_interval = seal_interval
        self.active_poll = active_poll
        self.idle_poll = idle_poll
        self.rescan_interval = rescan_interval
        self.periodic_interval = periodic_interval
        self.batch = batch
        self.tick = tick
        self.max_pending = max_pending
        self.settle = settle
        self.stats = WatchStats()
        self.tracks: dict[tuple[int, int], Track] = {}
        self._by_path: dict[bytes, Track] = {}
        self._dirty: set[bytes] = set()
        self._lock = threading.Lock()  # guards _dirty
        # Guards every track: the loop, watchdog's thread (prompt reads of renamed and new
        # files), the follow thread and the guard's thread.
        self._state = threading.RLock()
        self._hot: set[tuple[int, int]] = set()
        self._heat = threading.Event()
        self._closing = threading.Event()
        self._follow_thread: threading.Thread | None = None
        self._guard = TruncationGuard(self._guarded_open, self._guarded_access)
        self.guard_mode = "off"
        self._switch = sys.getswitchinterval()
        self._wake = threading.Event()
        self._observer: Any = None
        self._known: dict[tuple[int, int], int] = {}
        self._fd_budget = 0
        self._warned_fds = False
        self._sealed_seq = -1
        self._refused: set[tuple[int, int]] = set()
        self._dirs: set[tuple[int, int]] = set()
        self._generations: dict[tuple[int, int], int] = {}
        # Increments cut under the lock, stored by the loop outside it, so that a guarded
        # or hot read never waits for a disk write.
        self._outbox: list[tuple[str, bytearray, dict[str, Any]]] = []

    # -- setup -----------------------------------------------------------------------

    def _sink(self, path: bytes) -> None:
        """Runs in watchdog's thread: queue the path for the loop, and read at once."""
        try:
            if path not in self._by_path:  # a followed log's changes are handled right here
                with self._lock:
                    self._dirty.add(path)
                self._wake.set()
            self._prompt(path)
        except Exception as e:  # never kill watchdog's thread; the loop will retry
            self.ctx.log.warning("watch_prompt_failed", error=f"{type(e).__name__}: {e}")

    def _prompt(self, path: bytes) -> None:
        """Read a followed log's new bytes without waiting for the loop; when a rotation
        copy (``x.log.1`` as a new file) appears, start polling ``x.log`` without pause,
        so that what is written between logrotate's copy and its truncate is kept."""
        with self._state:
            if self._closing.is_set():
                return
            track = self._by_path.get(path)
            if track is not None:
                self._poll(track)
                if not self._still_followed(path):  # renamed away, or replaced
                    with self._lock:
                        self._dirty.add(path)
                    self._wake.set()
                return
            try:
                st = os.lstat(path)
            except OSError:
                return
            if not stat.S_ISREG(st.st_mode):
                return
            # A new file, or a rename (recorded by the loop): either may be a rotation.
            if self._heat_siblings(path):
                self._heat.set()

    def _still_followed(self, path: bytes) -> bool:
        track = self._by_path.get(path)
        try:
            return track is not None and _key(os.lstat(path)) == track.key
        except OSError:
            return False

    # -- the guard's callbacks (in its thread, while another process waits) -------------

    @contextlib.contextmanager
    def _waited_for(self, key: tuple[int, int]) -> Iterator[Track | None]:
        """The followed log another process waits on, under the lock; None when it is not
        followed, the watch is closing, or the lock stays busy for ``GUARD_WAIT`` (the
        process then goes on unread: counted, never held longer)."""
        if not self._state.acquire(timeout=GUARD_WAIT):
            self.stats.guard_timeouts += 1
            yield None
            return
        try:
            track = self.tracks.get(key)
            yield None if self._closing.is_set() else track
        finally:
            self._state.release()

    def _guarded_open(self, key: tuple[int, int], pid: int) -> None:
        """Another process opens a followed log: it may be about to truncate it (``>``,
        or logrotate's ``copytruncate`` once it has copied it). Make its truncation wait
        for the watch too (arm), or failing that poll the log without pause for a moment;
        then read it to the end before the open goes on."""
        with self._waited_for(key) as track:
            if track is None:
                return
            self.stats.guarded_opens += 1
            now = time.monotonic()
            if self._first_open(track, pid, now):
                if track.armed_until > now or self._guard.arm(track.fd, key[0]):
                    track.armed_until = now + ARM_SECONDS + track.offset / ARM_RATE
                else:  # no pre-content events (a kernel before 6.14, or tmpfs)
                    track.hot_until = now + HOT_SECONDS
                    self._hot.add(key)
                    self._heat.set()
            self._poll(track, budget=GUARD_READ)

    @staticmethod
    def _first_open(track: Track, pid: int, now: float) -> bool:
        """A process's first open of the log in a while. Only those arm (or heat) it: a
        logger that reopens its file for every line would otherwise keep it armed, and
        every later descriptor on it would then wait for the watch at each write."""
        last = track.opened_by.get(pid)
        track.opened_by[pid] = now
        if len(track.opened_by) > 64:
            for old in sorted(track.opened_by, key=track.opened_by.__getitem__)[:32]:
                del track.opened_by[old]
        return last is None or now - last > REOPEN_QUIET

    def _guarded_access(self, key: tuple[int, int], pid: int) -> None:
        """An armed log is about to be truncated (or read or written through a descriptor
        opened while it was armed): take every byte that is there first."""
        with self._waited_for(key) as track:
            if track is not None:
                self.stats.guarded_accesses += 1
                self._poll(track, budget=GUARD_READ)

    # -- the follow thread -----------------------------------------------------------

    def _follow_loop(self) -> None:
        """Looks at each log when it is due (``active_poll`` or ``idle_poll``), and at hot
        logs without pause; lets armed logs go once their time is up. An error is logged
        and the next round goes on: a dead follow thread would stop every increment."""
        hot_switch = False
        due = 0.0
        while not self._closing.is_set():
            try:
                now = time.monotonic()
                if now >= due:
                    due = self._poll_due(now)
                with self._state:
                    self._poll_hot(time.monotonic())
                    busy = bool(self._hot)
            except Exception as e:
                self.ctx.log.warning("watch_follow_failed", error=f"{type(e).__name__}: {e}")
                due, busy = time.monotonic() + self.active_poll, False
            if busy:
                if not hot_switch:
                    # Other threads now hand the interpreter over within HOT_PAUSE, so a
                    # poll is never more than that late.
                    sys.setswitchinterval(HOT_PAUSE)
                    hot_switch = True
                time.sleep(0)
            else:
                if hot_switch:
                    sys.setswitchinterval(WATCH_SWITCH)
                    hot_switch = False
                if self._heat.wait(max(0.0, due - time.monotonic())):
                    self._heat.clear()

    def _poll_due(self, now: float) -> float:
        """Polls every log whose turn it is; returns when the next one is due. A log whose
        size and modification time have not changed is passed over without the lock, and
        the lock is taken per log, so a guarded open never waits for a whole round. Quiet
        logs share a budget of ``QUIET_POLLS`` looks a second (a thousand rotated
        generations must not cost a tenth of a core)."""
        tracks = list(self.tracks.values())
        idle = max(self.idle_poll, len(tracks) / QUIET_POLLS)
        due = now + idle
        for track in tracks:
            if track.next_poll <= now:
                quiet = now - track.last_growth > IDLE_AFTER
                track.next_poll = now + (idle if quiet else self.active_poll)
                if not self._unchanged(track):
                    with self._state:
                        if self.tracks.get(track.key) is track:  # not untracked meanwhile
                            self._poll(track)
            if track.armed_until and track.armed_until <= now:
                with self._state:
                    if track.armed_until and self.tracks.get(track.key) is track:
                        self._guard.disarm(track.fd)
                        track.armed_until = 0.0
            due = min(due, track.next_poll)
        return due

    @staticmethod
    def _unchanged(track: Track) -> bool:
        """Nothing written, truncated or unlinked since the last look. A descriptor closed
        (and its number reused) meanwhile only makes this False: the poll then checks."""
        try:
            st = os.fstat(track.fd)
        except OSError:
            return False
        return (
            st.st_size == track.offset
            and st.st_mtime_ns == track.mtime_ns
            and st.st_nlink > 0
            and not track.deleted
        )

    def _poll_hot(self, now: float) -> None:
        for key in list(self._hot):
            track = self.tracks.get(key)
            if track is None or track.hot_until <= now:
                self._hot.discard(key)
                continue
            seen = track.truncations
            self._poll(track)
            if track.truncations != seen:
                self._hot.discard(key)  # the copy is done and truncated

    def _source_for(self, path: bytes) -> LogSource | None:
        for source in self.sources:
            if source.covers(path):
                return source
        return None

    def directories(self) -> list[bytes]:
        dirs = []
        for s in self.sources:
            d = s.root if os.path.isdir(s.root) else os.path.dirname(s.root)
            if d not in dirs:
                dirs.append(d)
        return dirs

    def start(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        # Spare descriptors: the guard's events each bring one (a read takes up to 16).
        self._fd_budget = max(16, min(soft, 65536) - 256)
        # Threads hand over the interpreter lock at least this often: a guarded open (and
        # the process waiting on it) must not wait 5 ms (the default) behind other work.
        sys.setswitchinterval(WATCH_SWITCH)
        unguarded = self._guard.start()
        self._known = preserved_offsets(self.ctx.journal.path)
        observer = Observer()
        handler = _Handler(self._sink)
        scheduled = 0
        for d in self.directories():
            recursive = any(s.root == d for s in self.sources)
            try:
                observer.schedule(
                    handler, os.fsdecode(d), recursive=recursive, event_filter=_EVENTS
                )
                scheduled += 1
            except OSError as e:
                self.ctx.error(NAME, f"cannot watch directory ({e}); polling it instead", d)
        if scheduled:
            observer.daemon = True
            observer.start()
            self._observer = observer
        else:
            self.rescan_interval = min(self.rescan_interval, 1.0)
        # Events from here on are queued; the scan below then cannot miss a file.
        self._rescan(initial=True)
        self.guard_mode = self._probe_guard(unguarded)
        self._follow_thread = threading.Thread(
            target=self._follow_loop, name="watch-follow", daemon=True
        )
        self._follow_thread.start()
        self.ctx.journal.append(
            "event",
            collector=NAME,
            what="watch-started",
            directories=[describe(d) for d in self.directories()],
            followed=len(self.tracks),
            inotify=scheduled > 0,
            truncation_guard=self.guard_mode,
        )

    def _probe_guard(self, unguarded: str | None) -> str:
        if unguarded is not None:
            return f"off: {unguarded}"
        probe = next(iter(self.tracks.values()), None)
        if probe is None:
            return "opens; truncations where the kernel allows"
        if self._guard.arm(probe.fd, probe.key[0]):
            self._guard.disarm(probe.fd)
            return "opens and truncations"
        return "opens only: truncations need Linux 6.14+ on ext4, xfs or btrfs"

    # -- the loop --------------------------------------------------------------------

    def run(self, duration: float, stopped: Callable[[], bool]) -> None:
        now = time.monotonic()
        until = now + duration
        next_rescan = now + self.rescan_interval
        next_periodic = now
        next_seal = now + self.seal_interval
        while not stopped() and not self.ctx.engine.full.is_set():
            now = time.monotonic()
            if now >= until:
                break
            if self._wake.wait(timeout=min(self.tick, until - now)):
                self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            for path in sorted(dirty):
                if self._still_followed(path):
                    continue  # a followed log: the follow thread reads it
                with self._state:
                    self._touch(path)
            now = time.monotonic()
            if now >= next_rescan:
                self._rescan()
                next_rescan = time.monotonic() + self.rescan_interval
            with self._state:
                self._flush_due(time.monotonic())
            self._store()
            if now >= next_periodic:
                self._run_periodic()
                next_periodic = now + self.periodic_interval
            if now >= next_seal:
                self._seal("watch")
                next_seal = now + self.seal_interval
            if dirty:
                time.sleep(self.batch)  # let a burst of events gather into one pass

    def close(self, reason: str) -> None:
        """Stop watching; read every followed file to its end, store it, seal."""
        if self._observer is not None:
            self._observer.stop()
        self._closing.set()
        self._guard.close()  # nobody waits for the watch from here on
        self._heat.set()
        if self._follow_thread is not None:
            self._follow_thread.join(timeout=5)
        with self._state:
            for _ in range(64):  # a new directory queues its files (and subdirectories)
                with self._lock:
                    dirty, self._dirty = self._dirty, set()
                if not dirty:
                    break
                for path in sorted(dirty):
                    self._touch(path)
            for track in list(self.tracks.values()):
                self._poll(track, drain=True)
                self._flush(track)
            for track in list(self.tracks.values()):
                self._untrack(track)
        self._store()
        sys.setswitchinterval(self._switch)
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
        if self._observer is not None:
            self._observer.join(timeout=5)

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

    # -- discovery -------------------------------------------------------------------

    def _rescan(self, initial: bool = False) -> None:
        for source in self.sources:
            try:
                st = os.lstat(source.root)
            except OSError:
                continue
            paths: Iterable[bytes]
            if stat.S_ISDIR(st.st_mode):
                paths = walk(source.root, lambda p, e: None, max_depth=source.max_depth)
            else:
                paths = [source.root]
            for path in paths:
                if source.selects(path):
                    with self._state:
                        self._touch(path, initial=initial)

    def _event(self, what: str, track: Track | None = None, **fields: Any) -> None:
        self.stats.count(what)
        if track is not None:
            fields = {
                **describe(track.path),
                "dev": str(track.key[0]),
                "ino": str(track.key[1]),
                "generation": track.generation,
                **fields,
            }
        self.ctx.journal.append("event", collector=NAME, what=what, **fields)

    def _touch(self, path: bytes, initial: bool = False) -> None:
        """Something happened at ``path``: follow it, or notice it moved or went away."""
        try:
            st = os.lstat(path)
        except OSError:
            track = self._by_path.get(path)
            if track is not None:
                self._poll(track)
            return
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key not in self._dirs:
                self._dirs.add(key)
                if not initial and self._source_for(path + b"/x") is not None:
                    self._queue_dir(path)  # a new directory: its files may predate the watch
            return
        if not stat.S_ISREG(st.st_mode):
            return
        track = self.tracks.get((st.st_dev, st.st_ino))
        if track is None:
            if self._source_for(path) is not None:
                self._follow(path, st, initial)
            return
        if track.path != path:
            self._maybe_renamed(track, path)
        self._poll(track)

    def _queue_dir(self, directory: bytes) -> None:
        """The loop follows the files one by one, taking the lock for each: a directory
        of a thousand logs must not keep a guarded open waiting."""
        paths = [
            path
            for path in walk(directory, lambda p, e: None)
            if self._source_for(path) is not None
        ]
        with self._lock:
            self._dirty.update(paths)
        self._wake.set()

    def _maybe_renamed(self, track: Track, new: bytes) -> None:
        try:
            old = os.lstat(track.path)
            if (old.st_dev, old.st_ino) == track.key:
                return  # a second hard link, not a rename
        except OSError:
            pass
        self._poll(track)
        self._flush(track)
        previous = track.path
        if self._by_path.get(previous) is track:
            del self._by_path[previous]
        track.path = new
        self._by_path[new] = track
        self._event("renamed", track, old=describe(previous))

    def _follow(self, path: bytes, st: os.stat_result, initial: bool) -> None:
        key = (st.st_dev, st.st_ino)
        cap = self.ctx.engine.max_file_size
        if cap is not None and st.st_size - self._known.get(key, 0) > cap:
            if key not in self._refused:
                self._refused.add(key)
                if not initial or key in self._known:
                    self.ctx.error(NAME, f"larger than --max-file-size ({cap} bytes)", path)
            return
        if len(self.tracks) >= self._fd_budget:
            if not self._warned_fds:
                self._warned_fds = True
                self.ctx.error(NAME, "too many logs to follow; this and later new ones are not")
            return
        try:
            fd = open_source(path)
        except FileNotFoundError:
            # Created and removed between two looks (a rotation's temporary copy, say).
            self._event("vanished", None, **describe(path), ino=str(key[1]), dev=str(key[0]))
            return
        except OSError as e:
            if key not in self._refused:
                self._refused.add(key)
                if not initial:  # at start, the initial pass has already recorded why
                    self.ctx.error(NAME, f"cannot open to follow: {e.strerror}", path)
            return
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != key or not stat.S_ISREG(opened.st_mode):
            os.close(fd)
            return
        offset = self._known.get(key, 0)
        compressed = path.lower().endswith(tuple(s.encode() for s in COMPRESSED))
        if initial and key in self._known:
            generation = 0
        else:
            generation = self._generations.get(key, 0 if key in self._known else -1) + 1
        self._generations[key] = generation
        track = Track(
            key, fd, path, offset, compressed, last_growth=time.monotonic(), generation=generation
        )
        if offset:
            with contextlib.suppress(OSError):
                track.tail = os.pread(fd, min(TAIL, offset), offset - min(TAIL, offset))
        self.tracks[key] = track
        self._by_path[path] = track
        self.stats.followed += 1
        if self._guard.active and not self._guard.watch(fd):
            self.stats.unguarded += 1  # the kernel's mark limit, say: polled only
        if not initial or key not in self._known:
            self._event(
                "created" if not initial else "followed",
                track,
                size=str(opened.st_size),
                compressed=compressed,
                already_stored=str(offset),
            )
        self._poll(track)

    def _heat_siblings(self, new: bytes) -> bool:
        """A rotated name (``x.log.1``, ``x.log-20261127``, ``x.log.2.gz``) appeared: a
        rotation is running in this directory, and a ``copytruncate`` log in it may be
        copied and truncated within milliseconds. Read every log there without pause
        for a moment (until its truncation, or ``HOT_SECONDS``)."""
        directory, name = os.path.split(new)
        stem = name
        for suffix in COMPRESSED:
            if stem.lower().endswith(suffix.encode()):
                stem = stem[: -len(suffix)]
                break
        if _ROTATED.sub(b"", stem) == stem:
            return False
        until = time.monotonic() + HOT_SECONDS
        heated = False
        for track in list(self.tracks.values()):
            if track.deleted or track.compressed or os.path.dirname(track.path) != directory:
                continue
            if _ROTATED.sub(b"", os.path.basename(track.path)) != os.path.basename(track.path):
                continue  # an older generation: nothing copies and truncates those
            track.hot_until = until
            self._hot.add(track.key)
            self._poll(track)
            heated = True
        return heated

    def _untrack(self, track: Track) -> None:
        self.tracks.pop(track.key, None)
        if self._by_path.get(track.path) is track:
            del self._by_path[track.path]
        self._hot.discard(track.key)
        if track.armed_until:
            self._guard.disarm(track.fd)
        self._guard.unwatch(track.fd)  # an inode mark outlives the descriptor
        with contextlib.suppress(OSError):
            os.close(track.fd)

    # -- reading ---------------------------------------------------------------------

    def _truncated(self, track: Track, st: os.stat_result) -> bool:
        size = st.st_size
        if size < track.offset:
            return True
        if not track.tail or (size == track.offset and st.st_mtime_ns == track.mtime_ns):
            return False  # nothing written since the last look (the common case)
        try:
            here = os.pread(track.fd, len(track.tail), track.offset - len(track.tail))
        except OSError:
            return False
        return here != track.tail

    def _poll(self, track: Track, drain: bool = False, budget: int = 16 << 20) -> None:
        try:
            st = os.fstat(track.fd)
        except OSError:
            return
        if self._truncated(track, st):
            self._flush(track)
            self._event("truncated", track, was=str(track.offset), size=str(st.st_size))
            track.truncations += 1
            track.offset = 0
            track.tail = b""
        if st.st_size > track.offset:  # else nothing new: the common case, kept cheap
            self._read(track, None if drain or st.st_nlink == 0 else budget)
        track.mtime_ns = st.st_mtime_ns
        if st.st_nlink == 0 and not track.deleted:
            # Kept open: a writer that still holds the file (an intruder's daemon, a
            # logger not yet told about the rotation) may go on writing into it.
            track.deleted = True
            self._flush(track)
            self._event("deleted", track, size=str(track.offset))
            if self._by_path.get(track.path) is track:
                del self._by_path[track.path]
        elif track.deleted and time.monotonic() - track.last_growth > DELETED_GRACE:
            self._flush(track)
            self._untrack(track)

    def _read(self, track: Track, budget: int | None) -> None:
        got = 0
        while budget is None or got < budget:
            want = READ_CHUNK if budget is None else min(READ_CHUNK, budget - got)
            try:
                data = os.pread(track.fd, want, track.offset)
            except OSError as e:
                self.ctx.error(NAME, f"read failed while following: {e.strerror}", track.path)
                return
            if not data:
                break
            if not track.pending:
                track.pending_since = time.monotonic()
            track.pending += data
            track.offset += len(data)
            track.last_growth = time.monotonic()
            track.tail = (track.tail + data[-TAIL:])[-TAIL:]
            got += len(data)
            if len(track.pending) >= self.max_pending * (8 if track.compressed else 1):
                self._flush(track)

    def _flush_due(self, now: float) -> None:
        for track in list(self.tracks.values()):
            if not track.pending:
                continue
            if track.compressed:
                due = now - track.last_growth >= self.settle
            else:
                due = now - track.pending_since >= self.flush_interval
            if due or len(track.pending) >= self.max_pending * 8:
                self._flush(track)

    def _flush(self, track: Track) -> None:
        if not track.pending:
            return
        start, end = track.pending_start, track.offset
        data, track.pending = track.pending, bytearray()  # handed over, not copied
        try:
            st = stat_fields(os.fstat(track.fd))
        except OSError:
            st = {"dev": str(track.key[0]), "ino": str(track.key[1])}
        gen = f"g{track.generation}" if track.generation else ""
        rel = f"artifacts/watch/{stored_relpath(track.path)}/i{track.key[1]}{gen}_{start}-{end}"
        fields = {
            "kind": "log-increment",
            "source": {**describe(track.path), "stat": st},
            "range": {"offset": start, "end": end},
            "generation": track.generation,
        }
        self._outbox.append((rel, data, fields))

    def _store(self) -> None:
        with self._state:
            items, self._outbox = self._outbox, []
        for rel, data, fields in items:
            if self.ctx.engine.store_bytes(rel, data, NAME, **fields) is not None:
                self.stats.increments += 1
                self.stats.bytes += len(data)
