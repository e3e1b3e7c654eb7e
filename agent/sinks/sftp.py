"""An evidence directory on an SFTP server: the second ``manifests.sink.Sink``.

asyncssh is asyncio; the copy engine writes from several worker threads. So the sink owns
one event loop in a background thread and gives the writer a synchronous facade: each
``write`` hands a copy of its chunk to the loop and returns, with at most ``IN_FLIGHT``
writes outstanding per file (a bounded memory buffer, never a spill to disk). Nothing is
staged on the host: bytes go from the one-pass copy to the server.

Durability: each artifact is ``fsync@openssh.com``-ed before its handle is closed, and
``sync`` (before every seal) waits for those replies (sent at ``close``, not waited for
there: ``sftpfile.Closing``) and flushes the files still open (the run log), so a seal
only covers bytes on the server's stable storage. A drop-box account that may
not rename makes ``renames`` False: the writer then writes artifacts under their final
names and announces each in the journal first (``begin``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import json
import os
import threading
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any

from manifests.fstype import FileSystem

from ._loop import TIMEOUT, SinkLostError, _Loop, link_errors, os_error
from ._ssh import load
from .chunkpool import ChunkPool
from .sftpcodec import CREAT_FLAG, EXCL_FLAG, WRITE_FLAG, link_lost, status_errors
from .sftpfile import IN_FLIGHT, Closing, SftpFile
from .sidefsync import SideFsync, close_session, retrieved
from .sshproc import SshConnection
from .target import SftpTarget

__all__ = ["TIMEOUT", "SftpFile", "SftpSink", "SinkLostError", "_Loop"]

READ_LIMIT = 1 << 30  # a stored file read back (the run log) is held in memory
READ_CHUNK = 1 << 20
SFTP_FS = FileSystem("sftp")
_CREATE = WRITE_FLAG | CREAT_FLAG | EXCL_FLAG


async def _all(closing: list[Coroutine[Any, Any, None]]) -> None:
    """Gathered on the sink's loop (``gather`` binds to the loop of the thread it is
    called in)."""
    await asyncio.gather(*closing)


@dataclass(frozen=True)
class _Mode:
    """The attributes the wire client sends (asyncssh's ``SFTPAttrs`` for its own)."""

    permissions: int


class SftpSink:
    """One evidence directory under ``target.path`` on a connected server."""

    def __init__(
        self, loop: _Loop, conn: Any, sftp: Any, target: SftpTarget, fsync_ok: bool, renames: bool
    ) -> None:
        self.loop, self._conn, self._sftp, self.target = loop, conn, sftp, target
        self.fsync_ok = fsync_ok
        self.renames = renames  # False: artifacts are written in place (see the writer)
        self.can_setstat = renames  # a drop-box denies both
        self.lost: SinkLostError | None = None
        self.timeout = TIMEOUT  # --sink-timeout: one request's bound, then the link is lost
        self.journal_name = "custody.jsonl"
        self.acked: tuple[int, str] | None = None  # (seq, chain head) the server holds
        self._base = target.path
        self._made: set[str] = set()
        self._open: set[SftpFile] = set()
        self._journal: SftpFile | None = None
        self._lock = threading.Lock()
        self.chunks = ChunkPool(keep=2 * IN_FLIGHT)
        self.closing = Closing(self)
        self.side: SideFsync | None = None  # the session that fsyncs (connect starts it)

    # -- the directory ---------------------------------------------------------------

    def create_new(self, base: str) -> SftpSink:
        """Make ``PATH/<base>`` (or ``<base>-N``) on the server: new, never reused."""
        self._mkdirs(self.target.path)
        for n in range(1, 100):
            name = base if n == 1 else f"{base}-{n}"
            path = f"{self.target.path.rstrip('/')}/{name}"
            try:
                self.call(self._sftp.mkdir(path, self._attrs(0o750)), path)
            except OSError:
                if self.call(self._sftp.exists(path), path):
                    continue
                raise
            self._base = path
            return self
        raise FileExistsError(f"could not create a new evidence directory under {self.target}")

    def on(self, loop: _Loop, conn: Any, sftp: Any, fsync_ok: bool) -> SftpSink:
        """The same evidence directory through another connection (after a loss)."""
        again = SftpSink(loop, conn, sftp, self.target, fsync_ok, renames=False)
        again._base, again.timeout = self._base, self.timeout
        return again

    @property
    def location(self) -> str:
        return self.target.url(self._base)

    @property
    def file_system(self) -> FileSystem:
        return SFTP_FS

    def _path(self, rel: str) -> str:
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a plain relative path: {rel!r}")
        return f"{self._base}/{rel}"

    # -- calls -----------------------------------------------------------------------

    def result(self, future: concurrent.futures.Future[Any], where: str) -> Any:
        """Wait for one request; an SFTP status is an ``OSError``, a broken link is
        ``SinkLostError`` (and every later call raises it too).

        The request's own exception is looked at, never raised here: asyncssh keeps it in
        a reference cycle (the coroutine frame that raised it), and raised in this thread
        its traceback would take this thread's frames into that cycle, with every
        caller's buffers (the imaging pipeline's mmaps) until the cyclic GC runs."""
        if self.lost is not None:
            raise self.lost
        try:
            failed = future.exception(self.timeout)
        except link_errors() as e:  # no answer in time
            raise self._lose(e) from e
        if failed is None:
            return future.result()
        if isinstance(failed, link_lost()):
            raise self._lose(failed) from failed
        if isinstance(failed, status_errors()):
            raise os_error(failed, where) from failed
        if isinstance(failed, link_errors()):
            raise self._lose(failed) from failed
        raise failed

    def _attrs(self, permissions: int) -> Any:
        if isinstance(self._conn, SshConnection):
            return _Mode(permissions)
        return load().SFTPAttrs(permissions=permissions)

    def call(self, coro: Awaitable[Any], where: str) -> Any:
        return self.result(self.loop.submit(coro), where)

    def _lose(self, e: BaseException) -> SinkLostError:
        with self._lock:
            if self.lost is None:
                reason = f"the connection broke ({type(e).__name__}: {e})".rstrip(": )") + ")"
                if self.acked is not None:
                    reason += (
                        f"; the server acknowledged the journal up to seq {self.acked[0]}, "
                        f"chain head {self.acked[1]}"
                    )
                self.lost = SinkLostError(self.location, reason)
                if isinstance(self._conn, SshConnection):
                    # ssh is killed from this thread, at once (a signal: safe from any
                    # thread): the loop's thread may be the one blocked writing into a
                    # full pipe, for up to --sink-timeout, while the reconnect seals a
                    # continuation, and an ssh only stalled could still deliver after it.
                    self._abort()
                elif self.loop.running:  # asyncssh's connection: on its loop only
                    self.loop.loop.call_soon_threadsafe(self._abort)
            return self.lost

    def unconfirmed(self) -> list[str]:
        """The files whose bytes may not be on the server's disk: closed and their fsync
        not confirmed, or still open (after a loss, fsynced again before a seal)."""
        with self._lock:
            still_open = [f.rel for f in self._open if f.rel != self.journal_name]
        return self.closing.pending() + still_open

    def _abort(self) -> None:
        """Drop the connection at once (its socket lingers 0 s, see ``connect``: what the
        kernel still queues is discarded): once the run has stopped, no byte of it may
        reach the server later, when the link comes back, behind a continuation."""
        with contextlib.suppress(Exception):
            self._conn.abort()
        if self.side is not None:
            self.side.abort()

    @property
    def journal(self) -> SftpFile | None:
        return self._journal

    def acknowledge(self, journal_bytes: bytes) -> None:
        """The server has these journal lines: remember the last one's seq and hash."""
        line = journal_bytes.rstrip(b"\n").rpartition(b"\n")[2]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.acked = (int(json.loads(line)["seq"]), hashlib.sha256(line).hexdigest())

    def forget(self, file: SftpFile) -> None:
        with self._lock:
            self._open.discard(file)

    # -- the Sink operations ------------------------------------------------------------

    def _mkdirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        lead = "/" if path.startswith("/") else ""  # an absolute path stays absolute
        for depth in range(1, len(parts) + 1):
            prefix = lead + "/".join(parts[:depth])
            if prefix in self._made:
                continue
            try:
                self.call(self._sftp.mkdir(prefix, self._attrs(0o750)), prefix)
            except OSError:
                if not self.call(self._sftp.isdir(prefix), prefix):
                    raise
            self._made.add(prefix)

    def makedirs(self, rel: str) -> None:
        self._mkdirs(self._path(rel))

    def create(self, rel: str, append: bool = False) -> SftpFile:
        """Create ``rel`` exclusively (SFTP ``CREAT|EXCL``), read-only from the start."""
        path = self._path(rel)
        parent = path.rpartition("/")[0]
        if parent != self._base:
            self._mkdirs(parent)
        if not self.renames and self._journal is not None:
            # In place, the journal's 'begin' naming this file must be on the server
            # before any byte of the file: a killed run then leaves no unnamed file.
            self._journal._drain()
        opened = self._open_new(path, self._attrs(0o444), side=not append)
        handle, side = self.call(opened, rel)
        file = SftpFile(self, rel, handle, append, side)
        with self._lock:
            self._open.add(file)
        if rel == self.journal_name:
            self._journal = file
        return file

    async def _open_new(self, path: str, attrs: Any, side: bool) -> tuple[Any, Any]:
        """The OPEN; for an artifact (``side``), also its read-only handle in the fsync
        session, opened in the background: ``(handle, that task or None)``."""
        handle = await self._sftp.open(path, _CREATE, attrs, encoding=None)
        if not side or self.side is None or not self.side.usable:
            return handle, None
        task = asyncio.ensure_future(self.side.open(path))
        task.add_done_callback(retrieved)
        return handle, task

    def append_existing(self, rel: str) -> SftpFile:
        raise OSError(errno.EROFS, "custody is appended on the server itself, not over SFTP")

    def open_read(self, rel: str) -> int:
        """A stored file read back over SFTP into an anonymous memory file (``memfd``):
        the descriptor the writer hashes, and nothing on the host's disk. Streamed in
        chunks, so the file is held once (in the memfd), up to ``READ_LIMIT``."""
        path = self._path(rel)
        fd = os.memfd_create("preserve-readback", os.MFD_CLOEXEC)

        async def read() -> None:
            async with self._sftp.open(path, "rb") as f:
                offset = 0
                while chunk := await f.read(READ_CHUNK, offset):
                    offset += len(chunk)
                    if offset > READ_LIMIT:
                        raise OSError(errno.EFBIG, "too large to read back into memory", rel)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]

        try:
            self.call(read(), rel)
        except BaseException:
            os.close(fd)
            raise
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def fsync_stored(self, rel: str) -> None:
        """A stored file onto the server's disk through a read-only handle (``fsync``
        needs only a handle): the journal, after the connection writing it was lost."""
        if not self.fsync_ok:
            return

        async def fsync() -> None:
            handle = await self._sftp.open(self._path(rel), "rb")
            try:
                await handle.fsync()
            finally:
                await handle.close()

        self.call(fsync(), rel)

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            try:
                self.call(self._sftp.remove(self._path(rel)), rel)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    raise FileNotFoundError(rel) from e
                raise

    def rename(self, old: str, new: str) -> None:
        new_path = self._path(new)
        parent = new_path.rpartition("/")[0]
        if parent != self._base:
            self._mkdirs(parent)
        self.call(self._sftp.posix_rename(self._path(old), new_path), old)
        self.closing.renamed(old, new)

    def remove_empty_dirs(self, dirs: set[str], stop_at: str) -> None:
        """Best effort, as locally; a drop-box that denies ``rmdir`` keeps them."""
        for directory in sorted(dirs, key=len, reverse=True):
            parts = directory.split("/")
            while parts and "/".join(parts) != stop_at and "/".join(parts).startswith(stop_at):
                try:
                    self.call(self._sftp.rmdir(self._path("/".join(parts))), directory)
                except OSError:
                    break
                self._made.discard(self._path("/".join(parts)))
                parts = parts[:-1]

    def exists(self, rel: str) -> bool:
        return bool(self.call(self._sftp.exists(self._path(rel)), rel))

    def listdir(self, rel: str) -> list[str]:
        path = self._path(rel) if rel else self._base
        names = self.call(self._sftp.listdir(path), rel)
        return sorted(str(n) for n in names if n not in (".", ".."))

    def free_bytes(self) -> int | None:
        return None  # unknown: the copy engine then relies on the server's ENOSPC

    def sync(self, journal_only: bool = False) -> None:
        """Before a seal: every artifact closed has its fsync and CLOSE confirmed (or
        the first failure is raised); the files still open (the run log) are flushed,
        and the link is alive."""
        self.check()
        if journal_only:
            return
        self.closing.settle()
        with self._lock:
            still_open = [f for f in self._open if f._append and f.rel != self.journal_name]
        for file in still_open:
            file.fsync()

    def fsync_root(self) -> None:
        """SFTP has no directory fsync; the server's file system orders the ``mkdir``."""

    def check(self) -> None:
        if self.lost is not None:
            raise self.lost
        if self._conn.is_closed():
            raise self._lose(ConnectionError("closed by the server"))

    def close(self) -> None:
        """Orderly when the link is up (both sessions at once); after a loss, no waiting
        on a dead connection."""
        wait = 1.0 if self.lost is not None else 10.0
        if self.loop.running:
            sessions = [close_session(self._sftp, self._conn)]
            if self.side is not None:
                sessions.append(self.side.close())
            with contextlib.suppress(Exception):
                self.loop.run(_all(sessions), wait)
        self.loop.stop()
