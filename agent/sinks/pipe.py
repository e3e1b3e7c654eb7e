"""Writing SFTP requests into ssh's stdin, whole packets, from any thread.

The copy workers write their chunks' WRITE requests here themselves: handing each chunk
to the event loop (a task, a future per request, a wake-up of the loop's thread and one
back) was most of the client's Python time in an upload. The pipe is written with
``writev`` straight from the caller's buffers (no copy); a lock keeps packets whole and
in order. A full pipe is waited for with ``poll``, up to the sink's timeout: a link
that takes nothing for that long is lost (``ConnectionError``), as a request without a
reply is."""

from __future__ import annotations

import contextlib
import os
import select
import threading

IOV_MAX = 16  # the pipe takes at most 1 MiB: a few pieces fill it


class PipeWriter:
    """The ``write``/``write_eof`` half of ``asyncio.StreamWriter`` for one pipe, and
    ``write_parts`` for a packet from its pieces. Thread-safe."""

    def __init__(self, fd: int, timeout: float = 60.0) -> None:
        """``fd`` becomes this writer's own: it closes it at EOF."""
        os.set_blocking(fd, False)
        self._fd, self.timeout = fd, timeout
        self._lock = threading.Lock()
        self._eof = False
        self.error: OSError | None = None

    def write(self, data: bytes | memoryview) -> None:
        self.write_parts([data])

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """All of ``parts``, back to back, before any other thread's. A broken pipe (ssh
        gone) is kept in ``error`` and later writes dropped: the reader sees the end and
        says so."""
        views = [memoryview(p) for p in parts if len(p)]
        with self._lock:
            if self.error is not None or self._eof:
                return
            while views:
                try:
                    sent = os.writev(self._fd, views[:IOV_MAX])
                except BlockingIOError:
                    self._wait_writable()
                    continue
                except OSError as e:
                    self.error = e
                    return
                while sent:
                    if sent >= len(views[0]):
                        sent -= len(views.pop(0))
                    else:
                        views[0] = views[0][sent:]
                        sent = 0

    def _wait_writable(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        if not poller.poll(self.timeout * 1000):
            raise ConnectionError(f"ssh took nothing for {self.timeout:g} s")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        with self._lock:
            self._eof = True
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
