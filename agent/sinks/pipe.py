"""Writing SFTP requests into ssh's stdin, whole packets, from any thread.

The copy workers write their chunks' WRITE requests here themselves: handing each chunk
to the event loop (a task, a future per request, a wake-up of the loop's thread and one
back) was most of the client's Python time in an upload. The pipe is written with
``writev`` straight from the caller's buffers (no copy); a lock keeps packets whole and
in order.

The pipe is a blocking one: the pipe is full most of the time (ssh is the slower end),
and a non-blocking writer was woken for every 32 KiB ssh read, each time a ``poll``, a
partial ``writev`` and the GIL taken again (some 50,000 a GiB); blocked in the kernel,
it is woken there. A write that makes no headway for the sink's timeout is a lost link,
as a request without a reply is: a watchdog then ends ssh (``on_stall``), the blocked
``writev`` fails, and the writer raises ``ConnectionError``. Each write is one request
(at most a WRITE of 255 KiB), so a link counts as stalled when it took less than that
in the timeout (60 s by default)."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable

IOV_MAX = 16  # the pipe takes at most 1 MiB: a few pieces fill it


class PipeWriter:
    """The ``write``/``write_eof`` half of ``asyncio.StreamWriter`` for one pipe, and
    ``write_parts`` for a packet from its pieces. Thread-safe."""

    def __init__(
        self, fd: int, timeout: float = 60.0, on_stall: Callable[[], None] | None = None
    ) -> None:
        """``fd`` becomes this writer's own: it closes it at EOF. ``on_stall`` must end
        the pipe's reader (kill ssh); without it, nothing watches for a stall."""
        os.set_blocking(fd, True)
        self._fd, self.timeout = fd, timeout
        self._lock = threading.Lock()
        self._eof = False
        self.error: OSError | None = None
        self.stalled = False
        self._since: float | None = None  # when the write blocked now began
        self._closed = threading.Event()
        if on_stall is not None:
            threading.Thread(
                target=self._watch, args=(on_stall,), name="preserve-sftp-pipe", daemon=True
            ).start()

    def write(self, data: bytes | memoryview) -> None:
        self.write_parts([data])

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """All of ``parts``, back to back, before any other thread's. A broken pipe (ssh
        gone) is kept in ``error`` and later writes dropped: the reader sees the end and
        says so. After a stall, ``ConnectionError``."""
        views = [memoryview(p) for p in parts if len(p)]
        with self._lock:
            if self.error is not None or self._eof:
                return
            self._since = time.monotonic()
            try:
                while views:
                    try:
                        sent = os.writev(self._fd, views[:IOV_MAX])
                    except OSError as e:
                        self.error = e
                        if self.stalled:
                            raise ConnectionError(f"ssh took nothing for {self.timeout:g} s") from e
                        return
                    while sent:
                        if sent >= len(views[0]):
                            sent -= len(views.pop(0))
                        else:
                            views[0] = views[0][sent:]
                            sent = 0
            finally:
                self._since = None

    def _watch(self, on_stall: Callable[[], None]) -> None:
        """Every quarter of the timeout (a second at most): a write blocked for longer
        than the timeout ends ssh."""
        while not self._closed.wait(min(self.timeout / 4, 1.0)) and not self._reader_gone():
            since = self._since
            if since is not None and time.monotonic() - since > self.timeout:
                self.stalled = True
                on_stall()
                return

    def _reader_gone(self) -> bool:
        """ssh has exited (the pipe's read end is closed): nothing left to watch."""
        if self.error is not None or self._fd < 0:
            return True
        poller = select.poll()
        poller.register(self._fd, 0)  # POLLERR comes unasked once no reader is left
        return any(event & (select.POLLERR | select.POLLNVAL) for _, event in poller.poll(0))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """The end of the requests. A writer blocked meanwhile holds the lock: the
        watchdog stays on until this has it, so a stalled link still ends."""
        with self._lock:
            self._closed.set()
            self._eof = True
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
