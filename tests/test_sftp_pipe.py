"""Writing into ssh's stdin (agent/sinks/pipe.py), on a plain pipe: a blocked write that
makes no headway for the timeout ends the reader (``on_stall``) and raises
``ConnectionError`` within about the timeout; a slow reader that keeps taking is not a
stall; whole packets from several threads arrive whole and in order."""

from __future__ import annotations

import os
import threading
import time

import pytest

from agent.sinks.pipe import PipeWriter


def test_a_reader_that_takes_nothing_is_a_stall_ended_in_about_the_timeout() -> None:
    read_end, write_end = os.pipe()
    stalls: list[float] = []

    def stall() -> None:
        stalls.append(time.monotonic())
        os.close(read_end)  # what killing ssh does to the pipe

    writer = PipeWriter(write_end, timeout=1.0, on_stall=stall)
    began = time.monotonic()
    with pytest.raises(ConnectionError, match="took nothing for 1 s"):
        for _ in range(64):  # 16 MiB: more than any pipe holds
            writer.write(b"x" * (256 << 10))
    took = time.monotonic() - began
    assert len(stalls) == 1 and 1.0 < took < 3.0, (stalls, took)
    writer.write(b"after")  # dropped, not raised again: the reader says the end
    writer.write_eof()


def test_a_slow_reader_that_keeps_taking_is_no_stall() -> None:
    read_end, write_end = os.pipe()
    got = bytearray()

    def reader() -> None:
        while chunk := os.read(read_end, 64 << 10):
            got.extend(chunk)
            time.sleep(0.05)  # about 1.3 MB/s: each 256 KiB write waits, none for 1 s

    thread = threading.Thread(target=reader)
    thread.start()
    writer = PipeWriter(write_end, timeout=1.0, on_stall=lambda: os.close(read_end))
    for i in range(12):
        writer.write(bytes([i]) * (256 << 10))
    writer.write_eof()
    thread.join(30)
    assert not writer.stalled and writer.error is None
    assert bytes(got) == b"".join(bytes([i]) * (256 << 10) for i in range(12))
    os.close(read_end)


def test_packets_from_several_threads_arrive_whole_and_in_order() -> None:
    read_end, write_end = os.pipe()
    got = bytearray()
    thread = threading.Thread(target=lambda: [got.extend(c) for c in iter(
        lambda: os.read(read_end, 1 << 20), b"")])  # fmt: skip
    thread.start()
    writer = PipeWriter(write_end)

    def send(tag: int) -> None:
        for n in range(50):
            body = bytes([tag]) * (100_000 + n)
            writer.write_parts([len(body).to_bytes(4, "big"), body[:10], body[10:]])

    senders = [threading.Thread(target=send, args=(tag,)) for tag in (1, 2, 3)]
    for s in senders:
        s.start()
    for s in senders:
        s.join()
    writer.write_eof()
    thread.join(30)
    os.close(read_end)
    seen, pos = {1: 0, 2: 0, 3: 0}, 0
    while pos < len(got):
        size = int.from_bytes(got[pos : pos + 4], "big")
        body = got[pos + 4 : pos + 4 + size]
        tag = body[0]
        assert body == bytes([tag]) * (100_000 + seen[tag])  # whole, and this thread's next
        seen[tag] += 1
        pos += 4 + size
    assert seen == {1: 50, 2: 50, 3: 50}


def test_the_end_waits_for_a_blocked_writer_and_the_watchdog_still_ends_a_stall() -> None:
    """``write_eof`` while a writer is blocked on a reader that takes nothing: the
    watchdog is still on, ends the reader after the timeout, and both return."""
    read_end, write_end = os.pipe()
    writer = PipeWriter(write_end, timeout=1.0, on_stall=lambda: os.close(read_end))
    failed: list[BaseException] = []

    def fill() -> None:
        try:
            writer.write(b"x" * (4 << 20))
        except ConnectionError as e:
            failed.append(e)

    thread = threading.Thread(target=fill)
    thread.start()
    time.sleep(0.2)  # the writer is blocked in the kernel now
    began = time.monotonic()
    writer.write_eof()
    assert time.monotonic() - began < 3.0
    thread.join(5)
    assert not thread.is_alive() and writer.stalled and len(failed) == 1


def test_the_watchdog_ends_once_the_reader_is_gone() -> None:
    """ssh exited (the read end closed) with no end written: the watchdog thread stops
    by itself, so a reconnect's failed attempts leave none behind."""
    read_end, write_end = os.pipe()

    def watchdogs() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "preserve-sftp-pipe"}

    # Another test's watchdog may still be winding down: follow this writer's own thread.
    before = watchdogs()
    writer = PipeWriter(write_end, timeout=1.0, on_stall=lambda: None)
    (mine,) = watchdogs() - before
    os.close(read_end)
    mine.join(3)
    assert not mine.is_alive() and not writer.stalled
    writer.write_eof()
