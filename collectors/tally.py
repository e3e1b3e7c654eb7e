"""A byte count that many copying threads add to, chunk by chunk, without a lock.

The live progress must move while one large file is read (a 3 GB file that shows 0 B for
a minute looks hung), so the count is bumped for every chunk, and a lock a chunk would
be paid on every byte of every collection. Instead each thread owns one slot, written by
that thread alone; a reader sums the slots, and is at most a chunk behind."""

from __future__ import annotations

import threading


class ByteTally:
    def __init__(self) -> None:
        self._local = threading.local()
        self._slots: list[list[int]] = []
        self._lock = threading.Lock()  # taken once a thread, when its slot is made

    def slot(self) -> list[int]:
        """This thread's one-element slot: ``slot[0] += n`` is the whole cost of a chunk."""
        mine: list[int] | None = getattr(self._local, "slot", None)
        if mine is None:
            mine = self._local.slot = [0]
            with self._lock:
                self._slots.append(mine)
        return mine

    def add(self, n: int) -> None:
        self.slot()[0] += n

    @property
    def total(self) -> int:
        with self._lock:
            slots = list(self._slots)
        return sum(s[0] for s in slots)
