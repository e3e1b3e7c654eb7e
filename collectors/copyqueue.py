"""The copy engine's background work: a pool of copy workers fed from the walk.

At most ``IN_FLIGHT`` items wait for a worker at a time (``put`` blocks beyond), so a
walk of a million files never queues a million copies in memory; ``drain`` waits until
everything put so far has run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

IN_FLIGHT = 64  # queued items (a file, or a batch of a directory's small files)


class CopyQueue:
    """Runs work on ``workers`` threads, a bounded number waiting."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._slots = threading.BoundedSemaphore(IN_FLIGHT)
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def put(self, work: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self._slots.acquire()
        future = self._pool.submit(work, *args, **kw)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        self._slots.release()
        with self._lock:
            self._pending.discard(future)

    def drain(self) -> None:
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
