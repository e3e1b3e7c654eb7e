"""SHA-256 on a second thread, so that a large copy is as fast as its slowest stage.

``hashlib`` and file reads and writes all release the GIL on large buffers. Hashing
chunk *k* on a helper thread while the copy loop writes chunk *k* and reads chunk *k+1*
makes a large file cost max(read + write, hash) per chunk instead of read + hash + write:
on one large file the copy then runs near one core's SHA-256 rate. The copy still reads
each byte once: the hash and the stored copy are of the same buffer.

Small files keep the inline hash (``InlineHash``): a thread hand-off per chunk would cost
more than it saves when there is only one chunk.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from manifests.digest import CHUNK

# At or above this size a copy hashes in the background (two chunks in flight).
OVERLAP_FROM = 4 * CHUNK


class ChunkHash(Protocol):
    """What the copy loop needs of its hash: feed buffers in order, then the digest."""

    buffers: int  # how many buffers the caller must rotate through

    def update(self, data: memoryview) -> None: ...
    def ready_to_reuse(self) -> None: ...
    def hexdigest(self) -> str: ...
    def close(self) -> None: ...


class InlineHash:
    """Hashes in the caller's thread; one buffer is enough."""

    buffers = 1

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, data: memoryview) -> None:
        self._h.update(data)

    def ready_to_reuse(self) -> None:
        return None

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def close(self) -> None:
        return None


class BackgroundHash:
    """Hashes on a helper thread; the caller alternates between two buffers.

    ``ready_to_reuse`` must be called before the caller overwrites the buffer it filled
    two chunks ago: it returns once that buffer is hashed (hashing is in order, so at
    most one chunk, the previous one, is then still being hashed)."""

    buffers = 2

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash")
        self._in_flight: deque[Future[None]] = deque()

    def update(self, data: memoryview) -> None:
        self._in_flight.append(self._thread.submit(self._h.update, data))

    def ready_to_reuse(self) -> None:
        while len(self._in_flight) > 1:
            self._in_flight.popleft().result()

    def hexdigest(self) -> str:
        self._drain()
        return self._h.hexdigest()

    def close(self) -> None:
        """Wait for the buffers to be released, then end the thread (also on errors)."""
        self._drain()
        self._thread.shutdown(wait=True)

    def _drain(self) -> None:
        while self._in_flight:
            self._in_flight.popleft().result()


def hash_for(size: int) -> ChunkHash:
    """The hash a copy of ``size`` bytes should use."""
    return BackgroundHash() if size >= OVERLAP_FROM else InlineHash()
