"""A second SFTP session that makes the closed artifacts durable while the first one
streams the next.

An SFTP server answers one session's requests in order, and OpenSSH's ``sftp-server``
is one process doing one request at a time: an ``fsync@openssh.com`` there holds back
every write queued behind it for as long as the server's disk takes to write the file
(6 ms for the 8 MiB average of bench_sftp; with one fsync per file, a fifth of the
upload's time). A second session is a second server process: each artifact is also
opened there, read-only, as soon as it exists, and once its writes are acknowledged it
is fsynced through that handle (``fsync`` flushes the file, whichever descriptor asks),
while the first session has gone on to the next file. A seal still waits for every one
of those fsyncs (``sftpfile.Closing``), so it still covers only bytes on the server's
stable storage.

The second session is a convenience, never a condition. The fsync is sent on the first
session, as before, for a file closed before its handle there is open (the session
still connecting, a file smaller than a round trip), and once the second session could
not connect, does not offer fsync, would not open a file for reading, refused an fsync
(a read-only handle's, on Windows), took longer than its timeout, or broke: it is then
given up for the rest of the run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from typing import Any

from ._loop import link_errors, offers
from .sftpcodec import status_errors

READ_ONLY = "rb"


class SideFsync:
    """The fsync session, connecting in the background (``attempt``: the opener's
    future of ``(connection, sftp client, host key)``). ``timeout``: how long one of its
    fsyncs may take before the session counts as hung and the first session fsyncs."""

    def __init__(self, attempt: concurrent.futures.Future[Any], timeout: float) -> None:
        self._attempt = attempt
        self.timeout = timeout
        self._conn: Any = None
        self._sftp: Any = None
        self.usable = True  # False once it failed to connect, to open, or to fsync

    def _take(self) -> None:
        """The connection, once the attempt has made it (whoever looks first)."""
        made = _result(self._attempt)
        if self._conn is None and made is not None:
            self._conn, self._sftp, _ = made

    async def _client(self) -> Any:
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(self._attempt)
        self._take()
        if self._sftp is None or not offers(self._sftp, "fsync"):
            self.give_up()
            return None
        return self._sftp

    async def open(self, path: str) -> Any:
        """A read-only handle on ``path`` in this session, or None (fsync elsewhere)."""
        sftp = await self._client() if self.usable else None
        if sftp is None:
            return None
        try:
            return await sftp.open(path, READ_ONLY)
        except (*link_errors(), *status_errors()):  # broken, or a write-only account
            self.give_up()
        return None

    async def fsync(self, handle: Any) -> bool:
        """``handle`` fsynced (and closed) here: False if this session could not, which
        is then given up, and the caller fsyncs in the first session. A status is not
        raised either: a server may refuse an fsync through a read-only handle (Windows'
        needs write access); the first session's fsync then says whether the disk
        failed."""
        work = asyncio.ensure_future(fsync_and_close(handle, True))
        # Not wait_for: it waits out the cancelled work, and asyncssh's close after a
        # hung fsync would hang it in turn. The session is dropped instead, which fails
        # whatever of it is still waiting.
        done, _ = await asyncio.wait({work}, timeout=self.timeout)
        if not done:
            work.add_done_callback(retrieved)
            self.give_up()
            return False
        failed = work.exception()
        if failed is not None:
            if not isinstance(failed, (*link_errors(), *status_errors())):
                raise failed
            self.give_up()
            return False
        return True

    def give_up(self) -> None:
        self.usable = False
        self.abort()

    def abort(self) -> None:
        """Dropped at once, as the first session is after a loss."""
        self._attempt.cancel()
        self._take()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.abort()

    async def close(self) -> None:
        """Orderly once connected; a connection still being made is given up."""
        self._take()
        if self._sftp is None or not self.usable:
            self.abort()
            return
        await close_session(self._sftp, self._conn)


async def close_session(sftp: Any, conn: Any) -> None:
    """An SFTP session ended in order: the subsystem, then its connection."""
    with contextlib.suppress(Exception):
        sftp.exit()
        await sftp.wait_closed()
    with contextlib.suppress(Exception):
        conn.close()
        await conn.wait_closed()


async def fsync_and_close(handle: Any, fsync: bool) -> None:
    """The fsync (if asked) and the CLOSE of one handle, the fsync's error raised."""
    if hasattr(handle, "fsync_and_close"):  # the wire client: both sent at once
        await handle.fsync_and_close(fsync)
        return
    try:
        if fsync:
            await handle.fsync()
    finally:
        await handle.close()


def _result(future: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> Any:
    """What ``future`` gave, if it is done and neither failed nor was cancelled; else None."""
    if not future.done() or future.cancelled() or future.exception() is not None:
        return None
    return future.result()


def _opened(side: asyncio.Future[Any] | None) -> Any:
    """The file's handle in the second session if it is open by now; one still on its
    way is closed unused when it comes (the first session fsyncs this file)."""
    if side is None:
        return None
    if side.done():
        return _result(side)
    side.add_done_callback(_close_unused)
    return None


def retrieved(task: asyncio.Future[Any]) -> None:
    """A done callback: the task's exception looked at (asyncio then logs nothing); it is
    raised, where it matters, by whoever awaits the task."""
    if not task.cancelled():
        task.exception()


def _close_unused(side: asyncio.Future[Any]) -> None:
    handle = _result(side)
    if handle is not None:
        asyncio.ensure_future(handle.close()).add_done_callback(retrieved)


async def close_durably(
    handle: Any, side: asyncio.Future[Any] | None, fsync: bool, fsyncs: SideFsync | None
) -> None:
    """Close an artifact whose writes are acknowledged. Fsynced through its handle in
    the second session (``side``: the task opening it there) when that is open by now,
    else, or if that session could not, in its own session before the CLOSE."""
    second = _opened(side) if fsync else None
    try:
        if second is not None and fsyncs is not None and await fsyncs.fsync(second):
            fsync = False  # done: what is left is the CLOSE
    finally:
        await fsync_and_close(handle, fsync)
