"""When each followed log is looked at, and when its bytes are cut: ``Scheduler``.

Its follow thread (``watch-follow``) looks at a log that grew lately every ``active_poll``
seconds (50 ms), at a quiet one every ``idle_poll`` (0.1 s), and beyond 200 logs the quiet
ones share ``QUIET_POLLS`` looks a second; a hot log (a rotation of it under way, see
``FollowedLogs.heat``) is looked at without pause. Polling costs the same whatever the
write rate; an inotify event per write (a thousand a second on a busy server) cost more
than all the rest. ``flush_due``, called by the watch's main loop, cuts each log's pending
bytes at a bounded cadence (``flush_interval``), so a busy log does not make thousands of
tiny artifacts.
"""

from __future__ import annotations

import threading
import time

from .logfollowed import FollowedLogs
from .process_settings import ProcessSettings

IDLE_AFTER = 2.0  # a log that has not grown for this long is polled every idle_poll
QUIET_POLLS = 2000  # looks a second shared by the quiet logs, at most (beyond 200 logs)


class Scheduler:
    def __init__(
        self,
        followed: FollowedLogs,
        settings: ProcessSettings,
        active_poll: float,
        idle_poll: float,
        flush_interval: float,
        settle: float,
    ) -> None:
        self.followed = followed
        self.settings = settings
        self.active_poll = active_poll
        self.idle_poll = idle_poll
        self.flush_interval = flush_interval
        self.settle = settle
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="watch-follow", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the follow thread (after ``FollowedLogs.begin_close``)."""
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        """Looks at each log when it is due, and at hot logs without pause; lets armed
        logs go once their time is up. An error is logged and the next round goes on: a
        dead follow thread would stop every increment."""
        followed = self.followed
        due = 0.0
        while not followed.closing.is_set():
            try:
                now = time.monotonic()
                if now >= due:
                    due = self._poll_due(now)
                with followed.lock:
                    self._poll_hot(time.monotonic())
                    busy = bool(followed.hot)
            except Exception as e:
                followed.ctx.log.warning("watch_follow_failed", error=f"{type(e).__name__}: {e}")
                due, busy = time.monotonic() + self.active_poll, False
            self.settings.hot(busy)
            if busy:
                time.sleep(0)
            elif followed.heated.wait(max(0.0, due - time.monotonic())):
                followed.heated.clear()

    def _poll_due(self, now: float) -> float:
        """Polls every log whose turn it is; returns when the next one is due. A log whose
        size and modification time have not changed is passed over without the lock, and
        the lock is taken per log, so a guarded open never waits for a whole round. Quiet
        logs share a budget of ``QUIET_POLLS`` looks a second (a thousand rotated
        generations must not cost a tenth of a core)."""
        followed = self.followed
        logs = list(followed.tracks.values())
        idle = max(self.idle_poll, len(logs) / QUIET_POLLS)
        due = now + idle
        for log in logs:
            if log.next_poll <= now:
                quiet = now - log.last_growth > IDLE_AFTER
                log.next_poll = now + (idle if quiet else self.active_poll)
                if not log.unchanged():
                    with followed.lock:
                        if followed.current(log):
                            followed.poll(log)
            if log.armed_until and log.armed_until <= now:
                followed.disarm(log)
            due = min(due, log.next_poll)
        return due

    def _poll_hot(self, now: float) -> None:
        followed = self.followed
        for key in list(followed.hot):
            log = followed.tracks.get(key)
            if log is None or log.hot_until <= now:
                followed.hot.discard(key)
                continue
            seen = log.truncations
            followed.poll(log)
            if log.truncations != seen:
                followed.hot.discard(key)  # the copy is done and truncated

    def flush_due(self, now: float) -> None:
        """Cut the pending bytes of every log that has held them long enough."""
        followed = self.followed
        with followed.lock:
            for log in list(followed.tracks.values()):
                if log.flush_due(now, self.flush_interval, self.settle, followed.max_pending):
                    followed.flush(log)
