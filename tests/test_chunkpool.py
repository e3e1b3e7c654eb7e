"""The SFTP sink's chunk buffers: a chunk keeps its bytes until it is given back (the
server acknowledged it), whatever the caller does to its own buffer; a given-back buffer
is the next chunk's; small and oversized chunks are plain copies, not pooled. And which
chunks need one at all."""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any

from agent.sinks.chunkpool import BUFFER, POOLED_FROM, ChunkPool
from agent.sinks.sftpfile import SftpFile


def test_a_chunk_outlives_the_callers_buffer_until_given_back() -> None:
    pool = ChunkPool(keep=4)
    caller = bytearray(os.urandom(BUFFER))
    first = pool.copy(memoryview(caller))
    kept = bytes(caller)
    caller[:] = b"\0" * BUFFER  # the copy engine reuses its buffer at once
    second = pool.copy(memoryview(caller)[: BUFFER // 2])
    assert bytes(first) == kept and bytes(second) == b"\0" * (BUFFER // 2)
    assert isinstance(first, memoryview) and first.obj is not second.obj


def test_a_given_back_buffer_is_reused_and_the_spares_are_bounded() -> None:
    pool = ChunkPool(keep=1)
    chunks = [pool.copy(os.urandom(POOLED_FROM)) for _ in range(3)]
    buffers = [c.obj for c in chunks if isinstance(c, memoryview)]
    assert len({id(b) for b in buffers}) == 3
    for chunk in chunks:
        pool.give_back(chunk)
    again = pool.copy(b"x" * POOLED_FROM)
    assert isinstance(again, memoryview) and again.obj is buffers[0]
    fresh = pool.copy(b"y" * POOLED_FROM)  # only one spare was kept
    assert isinstance(fresh, memoryview) and all(fresh.obj is not b for b in buffers)
    assert bytes(again) == b"x" * POOLED_FROM


def test_small_and_oversized_chunks_are_not_pooled() -> None:
    pool = ChunkPool(keep=4)
    small = pool.copy(memoryview(b"journal line\n"))
    assert type(small) is bytes and small == b"journal line\n"
    big = pool.copy(b"z" * (BUFFER + 1))
    assert len(big) == BUFFER + 1 and bytes(big[-1:]) == b"z"
    pool.give_back(big)
    pool.give_back(small)
    assert isinstance(big, memoryview)
    reused = pool.copy(b"w" * POOLED_FROM)
    assert isinstance(reused, memoryview) and reused.obj is not big.obj


class _Sink:
    """What an SftpFile asks of its sink, for a write that is acknowledged at once."""

    lost = None
    journal_name = "custody.jsonl"

    def __init__(self) -> None:
        self.chunks = ChunkPool(keep=4)
        self.acknowledged: list[bytes] = []

    def result(self, future: Any, rel: str) -> None:
        future.result()

    def acknowledge(self, data: bytes) -> None:
        self.acknowledged.append(data)


class _WireHandle:
    """The wire client's handle: the whole request is in ssh's pipe when it returns."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_writes(self, data: Any, offset: int) -> list[concurrent.futures.Future[None]]:
        self.sent.append(data)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return [done]


def test_an_artifact_is_sent_from_the_callers_buffer_and_the_journal_copied() -> None:
    """Over the wire client an artifact's chunk is already in ssh's pipe when the write
    returns: sent from the caller's own buffer, no copy, nothing kept. The journal's
    lines are copied and kept until acknowledged (what reseal resends after a loss)."""
    sink, caller = _Sink(), bytearray(os.urandom(BUFFER))
    artifact_handle, journal_handle = _WireHandle(), _WireHandle()
    artifact = SftpFile(sink, "artifacts/files/x", artifact_handle, append=False)  # type: ignore[arg-type]
    artifact.write(memoryview(caller))
    (sent,) = artifact_handle.sent
    assert isinstance(sent, memoryview) and sent.obj is caller
    assert artifact.unacknowledged() == b""
    journal = SftpFile(sink, "custody.jsonl", journal_handle, append=True)  # type: ignore[arg-type]
    line = bytearray(b'{"seq":0}\n')
    journal.write(memoryview(line))
    line[:] = b"x" * len(line)  # the caller reuses its buffer
    assert journal.unacknowledged() == b'{"seq":0}\n'
    assert bytes(journal_handle.sent[0]) == b'{"seq":0}\n'
