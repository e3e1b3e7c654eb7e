"""A file being written on the server through the SFTP sink (agent/sinks/sftp.py): a
synchronous facade over the sink's event loop, at most ``IN_FLIGHT`` writes outstanding
(a bounded memory buffer, never a spill to disk).

An artifact's ``close`` sends its ``fsync@openssh.com`` and CLOSE and returns without
waiting for either reply (``Closing``): waiting for the server's fsync before the next
file streamed cost a third of the upload's time. A seal's flush (``SftpSink.sync``)
waits for every reply outstanding, so a seal still only covers bytes on the server's
stable storage, and a failed fsync fails that flush, and every later one."""

from __future__ import annotations

import concurrent.futures
import errno
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from ._loop import link_errors
from .sidefsync import close_durably

if TYPE_CHECKING:
    from .sftp import SftpSink

IN_FLIGHT = 16  # outstanding writes per file: 16 MiB at most with 1 MiB chunks
CLOSING = 8  # closed artifacts whose fsync and CLOSE replies are still awaited


class SftpFile:
    """A file being written on the server. Thread-safe: the journal's group commit
    fsyncs while another thread appends."""

    def __init__(
        self, sink: SftpSink, rel: str, handle: Any, append: bool, side: Any = None
    ) -> None:
        self._sink, self.rel, self._handle, self._append = sink, rel, handle, append
        self._side = side  # the task opening it in the fsync session (sidefsync), or None
        self._offset = 0
        self._end = 0
        self._pending: deque[tuple[list[concurrent.futures.Future[Any]], bytes | memoryview]] = (
            deque()
        )
        self._lock = threading.Lock()
        self._closed = False

    def _gone(self) -> bool:
        """After a loss, the journal and the run log stop quietly (the seal that would
        cover them raises); an artifact raises at once so its copy stops."""
        if self._sink.lost is None:
            return False
        if self._append:
            return True
        raise self._sink.lost

    def write(self, data: bytes | memoryview) -> None:
        if self._gone() or not data:
            return
        send = getattr(self._handle, "send_writes", None)  # the wire client's, not asyncssh's
        # The wire client has written the whole request into ssh's pipe when send returns,
        # so an artifact's chunk is sent from the caller's buffer as it is. asyncssh sends
        # later, and the journal's unacknowledged lines are kept for after a loss: those
        # are copied (the caller reuses its buffer).
        keep = send is None or self.rel == self._sink.journal_name
        blob = self._sink.chunks.copy(data) if keep else data
        with self._lock:
            if send is None:
                done = [self._sink.loop.submit(self._handle.write(blob, self._offset))]
            else:
                try:
                    done = send(blob, self._offset)  # from this thread: no loop, no task
                except link_errors() as e:
                    raise self._sink._lose(e) from e
            self._offset += len(blob)
            self._end = max(self._end, self._offset)
            self._pending.append((done, blob if keep else b""))
            while len(self._pending) > IN_FLIGHT:
                self._wait_oldest()

    def _wait_oldest(self) -> None:
        done, blob = self._pending[0]  # kept when the link breaks: see unacknowledged
        for future in done:
            self._sink.result(future, self.rel)
        self._pending.popleft()
        if self.rel == self._sink.journal_name:
            self._sink.acknowledge(bytes(blob))
        self._sink.chunks.give_back(blob)

    def unacknowledged(self) -> bytes:
        """What was sent and not acknowledged, in order: after a loss, the server holds
        a prefix of it (or all of it, or none). Kept for the journal (and everything
        over asyncssh); an artifact's chunks over the wire client are not."""
        with self._lock:
            return b"".join(blob for _, blob in self._pending)

    def _drain(self) -> None:
        with self._lock:
            while self._pending:
                self._wait_oldest()

    def skip(self, count: int) -> None:
        self._offset += count

    def finish(self, size: int, times_ns: tuple[int, int] | None = None) -> None:
        """A trailing hole becomes one zero byte at the end (truncating is a setstat,
        which a drop-box denies); times are copied where the server allows it. The file
        was created read-only (mode 0444), so there is no chmod to do."""
        if self._gone():
            return
        if self._end < size:
            self._offset = size - 1
            self.write(b"\0")
        if times_ns is not None and self._sink.can_setstat:
            self._drain()
            try:
                self._sink.call(self._handle.utime(ns=times_ns), self.rel)
            except OSError:
                self._sink.can_setstat = False  # denied once: not asked again

    def fsync(self) -> None:
        if self._gone():
            return
        self._drain()
        if self._sink.fsync_ok:
            self._sink.call(self._handle.fsync(), self.rel)

    def close(self) -> None:
        """The journal and the run log wait for their fsync; an artifact's writes are
        acknowledged first (a failed write is still this file's error, as on a local
        drive), then its fsync and CLOSE are sent and waited for at the next flush."""
        if self._closed:
            return
        self._closed = True
        self._sink.forget(self)
        if self._sink.lost is not None:
            return
        if self._append:
            self.fsync()
            self._sink.call(self._handle.close(), self.rel)
            return
        self._drain()
        closed = close_durably(self._handle, self._side, self._sink.fsync_ok, self._sink.side)
        done = self._sink.loop.submit(closed)
        self._sink.closing.add(self.rel, done)


class Closing:
    """Artifacts closed and not yet confirmed: at most ``CLOSING`` (the oldest is waited
    for when one more comes), all of them at each ``settle`` (before a seal). A failed
    fsync or CLOSE is kept and raised by every ``settle`` after it: no later seal may
    cover the file, nor the run end as if it were stored."""

    def __init__(self, sink: SftpSink) -> None:
        self._sink = sink
        self._queue: deque[list[Any]] = deque()  # [rel, future]: rel follows a rename
        self._lock = threading.Lock()  # held while one is waited for: see settle
        self.failed: OSError | None = None

    def add(self, rel: str, done: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._queue.append([rel, done])
            while len(self._queue) > CLOSING:
                self._settle_oldest()

    def renamed(self, old: str, new: str) -> None:
        with self._lock:
            for entry in self._queue:
                if entry[0] == old:
                    entry[0] = new

    def pending(self) -> list[str]:
        """The files closed and not confirmed (after a loss: to fsync again)."""
        with self._lock:
            return [str(entry[0]) for entry in self._queue]

    def settle(self) -> None:
        """Wait for every reply outstanding; the first failure, if any, raised."""
        with self._lock:
            while self._queue:
                self._settle_oldest()
        if self.failed is not None:
            raise self.failed

    def _settle_oldest(self) -> None:
        rel, done = self._queue[0]
        try:
            self._sink.result(done, rel)  # a broken link raises SinkLostError
        except OSError as e:
            if self.failed is None:
                why = e.strerror or str(e)
                self.failed = OSError(
                    e.errno or errno.EIO, f"fsync or close on the server failed: {why}", rel
                )
        self._queue.popleft()
