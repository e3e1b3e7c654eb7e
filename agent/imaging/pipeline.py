"""Reading, storing and hashing at once: three threads over a bounded pool of buffers.

    reader thread ──q──> caller (pieces, write, journal) ──q──> hasher thread ──> free pool

``hashlib`` and ``os.preadv``/``os.write`` release the GIL on large buffers, so on two
cores the device is read while the previous chunk is stored and piece-hashed and the one
before is added to the whole image's SHA-256. The whole hash comes last on purpose: it
only ever sees chunks that were stored, so when a run stops early the hash is of exactly
the bytes kept. Memory is ``BUFFERS * CHUNK`` (24 MiB), whatever the disk's size."""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from .reader import BadRange, Reader

CHUNK = 4 * 1024 * 1024
BUFFERS = 6


@dataclass
class Chunk:
    offset: int
    buf: mmap.mmap
    length: int
    bad: list[BadRange] = field(default_factory=list)

    @property
    def view(self) -> memoryview:
        return memoryview(self.buf)[: self.length]


class Outcome(NamedTuple):
    done: int  # bytes stored, from offset 0
    sha256: str  # of exactly those bytes
    failure: BaseException | None  # what ended it early (the device gone), if anything


def run(
    reader: Reader,
    size: int,
    consume: Callable[[Chunk], None],
    stop: Callable[[], bool],
    chunk: int = CHUNK,
    buffers: int = BUFFERS,
) -> Outcome:
    """Image ``size`` bytes through ``consume`` (called in this thread, in order) until the
    end, ``stop()`` says so, or reading or ``consume`` fails (returned as ``failure``)."""
    free: queue.Queue[mmap.mmap] = queue.Queue()
    pool = [mmap.mmap(-1, chunk) for _ in range(buffers)]
    for buf in pool:
        free.put(buf)
    read: queue.Queue[Chunk | BaseException | None] = queue.Queue()
    stored: queue.Queue[Chunk | None] = queue.Queue()
    halt = threading.Event()
    whole = hashlib.sha256()

    def reading() -> None:
        offset = 0
        try:
            while offset < size and not halt.is_set():
                buf = free.get()
                if halt.is_set():
                    free.put(buf)
                    break
                want = min(chunk, size - offset)
                n, bad = reader.read(offset, memoryview(buf), want)
                read.put(Chunk(offset, buf, n, bad))
                if n < want:
                    break  # the source ended early (shrank)
                offset += n
        except BaseException as e:  # handed to the caller's thread
            read.put(e)
        finally:
            read.put(None)

    def hashing() -> None:
        while (item := stored.get()) is not None:
            whole.update(item.view)
            free.put(item.buf)

    threads = [
        threading.Thread(target=reading, name="image-reader", daemon=True),
        threading.Thread(target=hashing, name="image-hasher", daemon=True),
    ]
    for t in threads:
        t.start()
    done, failure = 0, None
    try:
        while (item := read.get()) is not None:
            if isinstance(item, BaseException):
                failure = item
                continue
            if failure is not None or halt.is_set() or stop():
                halt.set()
                free.put(item.buf)
                continue
            try:
                consume(item)
            except BaseException as e:
                failure = e
                halt.set()
                free.put(item.buf)
                continue
            done += item.length
            stored.put(item)
    finally:
        halt.set()
        stored.put(None)
        for t in threads:
            t.join()
        for buf in pool:
            # A view of a buffer may still be held (by a failure's traceback): the buffer
            # is then freed with it, and closing it must not replace the failure.
            with contextlib.suppress(BufferError):
                buf.close()
    return Outcome(done, whole.hexdigest(), failure)
