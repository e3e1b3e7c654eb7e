"""Which files the watch follows: ``Discovery``.

watchdog (inotify on Linux) reports new, renamed and deleted names in the watched
directories at once, and a periodic ``rescan`` catches anything an event missed. Content
changes are not asked for: the follow thread polls (``collectors/logscheduler.py``).

Events run in watchdog's thread. A followed log's new name is handled there and then
(its bytes read before they can go, a rename recorded); any other path is queued for the
watch's main loop (``handle_queued``), which follows new files one lock at a time. A
rotated name appearing (``x.log.1``, ``x.log-20261127``, ``x.log.2.gz``) means a rotation
is running in that directory: its live logs turn hot, so that what is written between
logrotate's ``copytruncate`` copy and its truncation is kept.

Renames, deletions and new files (compressed generations included) are ``event``
records naming the inode, so the lab can rebuild each log's history.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
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
from .logfollowed import HOT_SECONDS, NAME, FollowedLogs
from .logprofile import LogSource
from .logtrack import COMPRESSED, Key, LogEvent, TrackedLog, key_of
from .pathmap import describe
from .source import open_source
from .walk import walk

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
FD_SPARE = 256  # descriptors kept free: the guard's events each bring one (a read up to 16)


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


class Discovery:
    def __init__(
        self, ctx: CollectContext, sources: list[LogSource], followed: FollowedLogs
    ) -> None:
        self.ctx = ctx
        self.sources = sources
        self.followed = followed
        self._dirty: set[bytes] = set()  # paths queued for the main loop
        self._lock = threading.Lock()  # guards _dirty
        self._wake = threading.Event()  # a path was queued
        self._observer: Any = None
        self._known: dict[Key, int] = {}  # bytes already stored, from the journal
        self._fd_budget = 0
        self._warned_fds = False
        self._refused: set[Key] = set()
        self._dirs: set[Key] = set()
        self._generations: dict[Key, int] = {}

    def directories(self) -> list[bytes]:
        dirs = []
        for s in self.sources:
            d = s.root if os.path.isdir(s.root) else os.path.dirname(s.root)
            if d not in dirs:
                dirs.append(d)
        return dirs

    def start(self, known: dict[Key, int], fd_limit: int) -> bool:
        """Watch the sources' directories; False if no directory could be watched (then
        only rescans find new names). ``known``: bytes already stored per inode."""
        self._known = known
        self._fd_budget = max(16, min(fd_limit, 65536) - FD_SPARE)
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
        return scheduled > 0

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()

    def join(self) -> None:
        if self._observer is not None:
            self._observer.join(timeout=5)

    # -- the main loop's side ----------------------------------------------------------

    def handle_queued(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for queued paths, then handle them; True if there were."""
        if self._wake.wait(timeout=timeout):
            self._wake.clear()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for path in sorted(dirty):
            if self._still_followed(path):
                continue  # a followed log: the follow thread reads it
            with self.followed.lock:
                self._touch(path)
        return bool(dirty)

    def drain(self) -> None:
        """The watch ends: handle what is queued (a new directory queues its files, and
        its subdirectories theirs). The caller holds the lock."""
        for _ in range(64):
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            if not dirty:
                break
            for path in sorted(dirty):
                self._touch(path)

    def rescan(self, initial: bool = False) -> None:
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
                    with self.followed.lock:
                        self._touch(path, initial=initial)

    # -- watchdog's thread -------------------------------------------------------------

    def _sink(self, path: bytes) -> None:
        """Queue the path for the loop, and read at once."""
        try:
            if path not in self.followed.by_path:  # a followed log's changes: right here
                self._queue([path])
            self._prompt(path)
        except Exception as e:  # never kill watchdog's thread; the loop will retry
            self.ctx.log.warning("watch_prompt_failed", error=f"{type(e).__name__}: {e}")

    def _prompt(self, path: bytes) -> None:
        """Read a followed log's new bytes without waiting for the loop; when a rotation
        copy (``x.log.1`` as a new file) appears, start polling ``x.log`` without pause,
        so that what is written between logrotate's copy and its truncate is kept."""
        followed = self.followed
        with followed.lock:
            if followed.closing.is_set():
                return
            log = followed.by_path.get(path)
            if log is not None:
                followed.poll(log)
                if not self._still_followed(path):  # renamed away, or replaced
                    self._queue([path])
                return
            try:
                st = os.lstat(path)
            except OSError:
                return
            if stat.S_ISREG(st.st_mode):
                # A new file, or a rename (recorded by the loop): either may be a rotation.
                self._heat_siblings(path)

    def _still_followed(self, path: bytes) -> bool:
        log = self.followed.by_path.get(path)
        try:
            return log is not None and key_of(os.lstat(path)) == log.key
        except OSError:
            return False

    def _heat_siblings(self, new: bytes) -> None:
        """A rotated name appeared: a rotation is running in this directory, and a
        ``copytruncate`` log in it may be copied and truncated within milliseconds. Read
        every log there without pause for a moment (until its truncation, or
        ``HOT_SECONDS``)."""
        directory, name = os.path.split(new)
        stem = name
        for suffix in COMPRESSED:
            if stem.lower().endswith(suffix.encode()):
                stem = stem[: -len(suffix)]
                break
        if _ROTATED.sub(b"", stem) == stem:
            return
        live = [
            log
            for log in list(self.followed.tracks.values())
            if not log.deleted
            and not log.compressed
            and os.path.dirname(log.path) == directory
            # an older generation: nothing copies and truncates those
            and _ROTATED.sub(b"", os.path.basename(log.path)) == os.path.basename(log.path)
        ]
        self.followed.heat(live, time.monotonic() + HOT_SECONDS)
        for log in live:
            self.followed.poll(log)

    # -- following (the caller holds the lock) -----------------------------------------

    def _touch(self, path: bytes, initial: bool = False) -> None:
        """Something happened at ``path``: follow it, or notice it moved or went away."""
        followed = self.followed
        try:
            st = os.lstat(path)
        except OSError:
            log = followed.by_path.get(path)
            if log is not None:
                followed.poll(log)
            return
        if stat.S_ISDIR(st.st_mode):
            key = key_of(st)
            if key not in self._dirs:
                self._dirs.add(key)
                if not initial and self._source_for(path + b"/x") is not None:
                    self._queue_dir(path)  # a new directory: its files may predate the watch
            return
        if not stat.S_ISREG(st.st_mode):
            return
        log = followed.tracks.get(key_of(st))
        if log is None:
            if self._source_for(path) is not None:
                self._follow(path, st, initial)
            return
        if log.path != path and not self._hard_link(log):
            followed.rename(log, path)
        followed.poll(log)

    def _hard_link(self, log: TrackedLog) -> bool:
        """The log's old name still names it: the new one is a second link, not a rename."""
        try:
            return key_of(os.lstat(log.path)) == log.key
        except OSError:
            return False

    def _queue_dir(self, directory: bytes) -> None:
        """The loop follows the files one by one, taking the lock for each: a directory
        of a thousand logs must not keep a guarded open waiting."""
        self._queue(
            path
            for path in walk(directory, lambda p, e: None)
            if self._source_for(path) is not None
        )

    def _queue(self, paths: Iterable[bytes]) -> None:
        """For the main loop to handle (``handle_queued``)."""
        paths = list(paths)
        with self._lock:
            self._dirty.update(paths)
        self._wake.set()

    def _follow(self, path: bytes, st: os.stat_result, initial: bool) -> None:
        key = key_of(st)
        cap = self.ctx.engine.max_file_size
        if cap is not None and st.st_size - self._known.get(key, 0) > cap:
            if key not in self._refused:
                self._refused.add(key)
                if not initial or key in self._known:
                    self.ctx.error(NAME, f"larger than --max-file-size ({cap} bytes)", path)
            return
        if len(self.followed.tracks) >= self._fd_budget:
            if not self._warned_fds:
                self._warned_fds = True
                self.ctx.error(NAME, "too many logs to follow; this and later new ones are not")
            return
        try:
            fd = open_source(path)
        except FileNotFoundError:
            # Created and removed between two looks (a rotation's temporary copy, say).
            event = LogEvent("vanished", {**describe(path), "ino": str(key[1]), "dev": str(key[0])})
            self.followed.record(event)
            return
        except OSError as e:
            if key not in self._refused:
                self._refused.add(key)
                if not initial:  # at start, the initial pass has already recorded why
                    self.ctx.error(NAME, f"cannot open to follow: {e.strerror}", path)
            return
        opened = os.fstat(fd)
        if key_of(opened) != key or not stat.S_ISREG(opened.st_mode):
            os.close(fd)
            return
        offset = self._known.get(key, 0)
        if initial and key in self._known:
            generation = 0
        else:
            generation = self._generations.get(key, 0 if key in self._known else -1) + 1
        self._generations[key] = generation
        log = TrackedLog.opened(fd, key, path, offset, generation)
        self.followed.add(log)
        if not initial or key not in self._known:
            self.followed.record(
                log.event(
                    "created" if not initial else "followed",
                    size=str(opened.st_size),
                    compressed=log.compressed,
                    already_stored=str(offset),
                )
            )
        self.followed.poll(log)

    def _source_for(self, path: bytes) -> LogSource | None:
        for source in self.sources:
            if source.covers(path):
                return source
        return None
