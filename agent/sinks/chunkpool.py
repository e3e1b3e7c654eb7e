"""Reused buffers for the chunks an SFTP file has sent and the server not yet
acknowledged.

A chunk must outlive the caller's buffer (the copy engine reuses its own at once) until
the server acknowledges it, and after a lost link it is what the server may or may not
hold. Copying each chunk into a new ``bytes`` object cost more than the copy itself: a
fresh megabyte comes from ``mmap`` and faults in, page by page, with the interpreter
lock held (28 % of the lock's time in a 1 GiB upload, bench/RESULTS.md). So the sink
copies into buffers it keeps and gets back once acknowledged; memory stays bounded by
the number of chunks in flight, as before."""

from __future__ import annotations

import threading

POOLED_FROM = 64 * 1024  # smaller chunks (journal lines, small files) are plain copies
BUFFER = 1 << 20


class ChunkPool:
    """At most ``keep`` spare buffers; a chunk larger than ``BUFFER`` gets its own."""

    def __init__(self, keep: int) -> None:
        self._spare: list[bytearray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def copy(self, data: bytes | memoryview) -> bytes | memoryview:
        size = len(data)
        if size < POOLED_FROM:
            return bytes(data)
        with self._lock:
            buffer = self._spare.pop() if self._spare and size <= BUFFER else None
        if buffer is None:
            buffer = bytearray(max(size, BUFFER))
        chunk = memoryview(buffer)[:size]
        chunk[:] = data
        return chunk

    def give_back(self, chunk: bytes | memoryview) -> None:
        """``chunk`` was acknowledged: nothing reads it any more."""
        if not isinstance(chunk, memoryview):
            return
        buffer = chunk.obj
        if isinstance(buffer, bytearray) and len(buffer) == BUFFER:
            with self._lock:
                if len(self._spare) < self._keep:
                    self._spare.append(buffer)
