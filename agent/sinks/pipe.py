"""Writing SFTP requests into ssh's stdin without copying them.

asyncio's pipe transport copies whatever the pipe does not take at once into one
``bytearray`` and then deletes from its front as the pipe drains, a ``memmove`` of the
rest each time: with 1 MiB chunks behind a pipe ssh empties 16 KiB at a time, that was
the stream's largest Python cost. Here the unsent parts stay the caller's buffers, as
``memoryview`` slices in a queue, handed to ``writev`` when the pipe is writable. The
queue is bounded by the sink (``IN_FLIGHT`` writes a file), not here."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque

IOV_MAX = 16  # the pipe takes at most 1 MiB: a few pieces fill it


class PipeWriter:
    """The ``write``/``write_eof`` half of ``asyncio.StreamWriter`` for one pipe."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, poll: float = 0.0) -> None:
        """``fd`` becomes this writer's own: it closes it at EOF. With ``poll``, a full
        pipe is tried again that many seconds later rather than at its first free page:
        a pipe big enough not to run dry meanwhile then takes far larger writes, with a
        third of the wake-ups (and no EAGAIN) of a readiness wait."""
        os.set_blocking(fd, False)
        self._loop, self._fd, self._poll = loop, fd, poll
        self._queue: deque[memoryview] = deque()
        self._watching = False
        self._eof = False
        self.error: OSError | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self.error is not None or self._eof or not data:
            return
        self._queue.append(data if isinstance(data, memoryview) else memoryview(data))
        if not self._watching:
            self._flush()

    def _flush(self) -> None:
        while self._queue:
            parts = self._islice()
            try:
                sent = os.writev(self._fd, parts)
            except BlockingIOError:
                break
            except OSError as e:  # ssh is gone: the reader sees the end and says so
                self.error = e
                self._queue.clear()
                break
            while sent:
                head = self._queue[0]
                if sent >= len(head):
                    sent -= len(head)
                    self._queue.popleft()
                else:
                    self._queue[0] = head[sent:]
                    sent = 0
                    parts = []  # the pipe is full: no second try straight away
            if not parts:
                break
        if self._queue and not self._watching and self._poll:
            self._loop.call_later(self._poll, self._retry)
            self._watching = True
        elif self._queue and not self._watching:
            self._loop.add_writer(self._fd, self._flush)
            self._watching = True
        elif not self._queue and self._watching:
            if not self._poll:
                self._loop.remove_writer(self._fd)
            self._watching = False
        if not self._queue and self._eof:
            self._close()

    def _retry(self) -> None:
        self._watching = False
        if self._fd >= 0:
            self._flush()

    def _islice(self) -> list[memoryview]:
        return [self._queue[i] for i in range(min(len(self._queue), IOV_MAX))]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._eof = True
        if not self._queue:
            self._close()

    def _close(self) -> None:
        if self._fd < 0:
            return
        if self._watching and not self._poll:
            self._loop.remove_writer(self._fd)
        self._watching = False
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1
