"""SFTP version 3 spoken over a byte stream (the pipes of OpenSSH's ``ssh -s sftp``).

The sink's default transport hands the cipher work to OpenSSH's C client and keeps only
the SFTP framing here; the calls mirror the subset of asyncssh's ``SFTPClient`` that
``SftpSink`` uses, so one sink serves both transports. The server may be hostile: every
reply is length-checked against ``MAX_PACKET`` before it is read, parsed with bounds
checks, and anything unexpected (an unknown type, an id never sent, trailing bytes)
ends the session as a broken link rather than being guessed at (the numbers, the
encodings and the bounds-checked reader are in ``sftpcodec``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
import threading
from collections.abc import Awaitable, Generator
from typing import Any

from .pipe import PipeWriter
from .sftpcodec import (
    ATTRS,
    CLOSE,
    DATA,
    DEFAULT_CHUNK,
    EXTENDED,
    EXTENDED_REPLY,
    FSETSTAT,
    FX_EOF,
    FX_OK,
    HANDLE,
    INIT,
    MAX_CHUNK,
    MAX_PACKET,
    MKDIR,
    NAME,
    OPEN,
    OPENDIR,
    READ,
    READ_FLAG,
    READDIR,
    REMOVE,
    RMDIR,
    STAT,
    STATUS,
    VERSION,
    VERSION_REPLY,
    WRITE,
    ProtocolError,
    Reader,
    SftpLinkLost,
    SftpNoSuchFile,
    attrs,
    status_error,
    string,
)

_Done = concurrent.futures.Future[None]


def _permissions(given: Any) -> int | None:
    return getattr(given, "permissions", None)


class _Opening:
    """What ``open`` returns: awaited, a handle; ``async with``, closed at the end."""

    def __init__(self, coro: Awaitable[Handle]) -> None:
        self._coro = coro
        self._handle: Handle | None = None

    def __await__(self) -> Generator[Any, None, Handle]:
        return self._coro.__await__()

    async def __aenter__(self) -> Handle:
        handle = self._handle = await self._coro
        return handle

    async def __aexit__(self, *exc: object) -> None:
        if self._handle is not None:
            await self._handle.close()


class Handle:
    """An open file on the server (asyncssh's ``SFTPClientFile`` calls)."""

    def __init__(self, client: WireClient, handle: bytes) -> None:
        self._client, self._handle = client, handle

    async def write(self, data: bytes | memoryview, offset: int) -> None:
        for done in self.send_writes(data, offset):
            await asyncio.wrap_future(done)

    def send_writes(
        self, data: bytes | memoryview, offset: int
    ) -> list[concurrent.futures.Future[None]]:
        """One WRITE per ``chunk`` bytes, sent from the calling thread (any thread);
        each future is done when the server's status is in (an ``SFTPError`` if not OK)."""
        step, view = self._client.chunk, memoryview(data)
        return [
            self._client.send_write(self._handle, offset + at, view[at : at + step])
            for at in range(0, len(view), step)
        ]

    async def read(self, size: int, offset: int) -> bytes:
        kind, reply = await self._client.request(
            READ, string(self._handle) + struct.pack(">QI", offset, min(size, self._client.chunk))
        )
        if kind == STATUS:
            code, message = self._client.status(reply)
            if code == FX_EOF:
                return b""
            raise status_error(code, message)
        data = self._client.expect(kind, reply, DATA).string()
        if len(data) > min(size, self._client.chunk):
            raise ProtocolError("a READ returned more than was asked for")
        return data

    async def fsync(self) -> None:
        await self._client.extended("fsync@openssh.com", string(self._handle))

    async def utime(self, ns: tuple[int, int]) -> None:
        times = (ns[0] // 10**9 & 0xFFFFFFFF, ns[1] // 10**9 & 0xFFFFFFFF)
        await self._client.ok(FSETSTAT, string(self._handle) + attrs(times=times))

    async def close(self) -> None:
        await self._client.ok(CLOSE, string(self._handle))

    async def fsync_and_close(self, fsync: bool) -> None:
        """The fsync (if asked) and the CLOSE, in that order, both sent before either
        reply is awaited; the fsync's error is the one raised."""
        sync = string("fsync@openssh.com") + string(self._handle)
        waits = [self._client._send(EXTENDED, sync)] if fsync else []
        waits.append(self._client._send(CLOSE, string(self._handle)))
        answers = [await wait for wait in waits]
        for answer in answers:
            self._client.check_status(answer)


class WireClient:
    """One SFTP session over ``reader``/``writer``; requests are pipelined by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: PipeWriter) -> None:
        self._reader, self._writer = reader, writer
        self._next = 0
        # A request from the loop awaits an asyncio future; a WRITE from a copy worker
        # (``send_write``) waits on a concurrent one, completed by the reply's reader.
        self._waiting: dict[int, asyncio.Future[tuple[int, Reader]] | _Done] = {}
        self._ids = threading.Lock()
        self._dispatch: asyncio.Task[None] | None = None
        self.lost: Exception | None = None
        self.extensions: dict[str, bytes] = {}
        self.chunk = DEFAULT_CHUNK
        self.supports_fsync = self.supports_posix_rename = False

    async def start(self) -> None:
        """INIT, then VERSION and its extensions; the write size from ``limits``."""
        self._writer.write(struct.pack(">IBI", 5, INIT, VERSION))
        kind, reply = await self._packet()
        if kind != VERSION_REPLY or reply.u32() != VERSION:
            raise ProtocolError("the server does not speak SFTP version 3")
        while reply.pos < len(reply.data) and len(self.extensions) < 64:
            name = reply.string().decode("utf-8", "replace")
            self.extensions[name] = reply.string()
        self.supports_fsync = self.extensions.get("fsync@openssh.com") == b"1"
        self.supports_posix_rename = self.extensions.get("posix-rename@openssh.com") == b"1"
        self._dispatch = asyncio.get_running_loop().create_task(self._replies())
        if "limits@openssh.com" in self.extensions:
            limits = await self.extended("limits@openssh.com", b"")
            limits.u64(), limits.u64()
            max_write = limits.u64()
            if max_write:
                self.chunk = max(1024, min(max_write, MAX_CHUNK))

    async def _packet(self) -> tuple[int, Reader]:
        (length,) = struct.unpack(">I", await self._reader.readexactly(4))
        if not 1 <= length <= MAX_PACKET:
            raise ProtocolError(f"a reply of {length} bytes (at most {MAX_PACKET})")
        body = await self._reader.readexactly(length)
        return body[0], Reader(body[1:])

    async def _replies(self) -> None:
        try:
            while True:
                kind, reply = await self._packet()
                if kind not in (STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY):
                    raise ProtocolError(f"a reply of unknown type {kind}")
                with self._ids:
                    waiter = self._waiting.pop(reply.u32(), None)
                if waiter is None:
                    raise ProtocolError("a reply to a request never sent")
                if isinstance(waiter, concurrent.futures.Future):
                    self._complete(waiter, kind, reply)
                elif not waiter.done():
                    waiter.set_result((kind, reply))
        except Exception as e:
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        if self.lost is None:
            self.lost = (
                e
                if isinstance(e, SftpLinkLost)
                else SftpLinkLost(f"the ssh session ended ({type(e).__name__})")
            )
        with self._ids:
            waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(self.lost)

    def _complete(self, waiter: _Done, kind: int, reply: Reader) -> None:
        try:
            self.check_status((kind, reply))
        except Exception as e:  # the status, or a reply of the wrong kind
            waiter.set_exception(e)
            if isinstance(e, ProtocolError):
                raise
        else:
            waiter.set_result(None)

    def _register(self, waiter: asyncio.Future[tuple[int, Reader]] | _Done) -> int:
        with self._ids:
            if self.lost is not None:
                raise self.lost
            self._next = (self._next + 1) & 0xFFFFFFFF
            self._waiting[self._next] = waiter
            return self._next

    def _send(self, kind: int, *parts: bytes | memoryview) -> asyncio.Future[tuple[int, Reader]]:
        waiter = asyncio.get_running_loop().create_future()
        rid = self._register(waiter)
        size = 5 + sum(len(p) for p in parts)
        self._writer.write_parts([struct.pack(">IBI", size, kind, rid), *parts])
        return waiter

    def send_write(self, handle: bytes, offset: int, data: memoryview) -> _Done:
        """A WRITE from any thread; a lost session raises at once, a pipe that takes
        nothing within the timeout raises ``ConnectionError``."""
        waiter: _Done = concurrent.futures.Future()
        rid = self._register(waiter)
        head = struct.pack(">IBI", 5 + 4 + len(handle) + 12 + len(data), WRITE, rid)
        self._writer.write_parts(
            [head, string(handle), struct.pack(">QI", offset, len(data)), data]
        )
        return waiter

    async def request(self, kind: int, body: bytes) -> tuple[int, Reader]:
        return await self._send(kind, body)

    @staticmethod
    def status(reply: Reader) -> tuple[int, str]:
        code, message = reply.u32(), reply.string().decode("utf-8", "replace")[:500]
        reply.string()
        reply.end()
        return code, message

    def check_status(self, answer: tuple[int, Reader]) -> None:
        kind, reply = answer
        if kind != STATUS:
            raise ProtocolError(f"a reply of type {kind} where a status was due")
        code, message = self.status(reply)
        if code != FX_OK:
            raise status_error(code, message)

    def expect(self, kind: int, reply: Reader, wanted: int) -> Reader:
        if kind == STATUS:
            raise status_error(*self.status(reply))
        if kind != wanted:
            raise ProtocolError(f"a reply of type {kind} where {wanted} was due")
        return reply

    async def ok(self, kind: int, body: bytes) -> None:
        self.check_status(await self.request(kind, body))

    async def extended(self, name: str, body: bytes) -> Reader:
        kind, reply = await self.request(EXTENDED, string(name) + body)
        if kind == STATUS:
            code, message = self.status(reply)
            if code != FX_OK:
                raise status_error(code, message)
        return reply

    # -- the asyncssh SFTPClient calls the sink makes ----------------------------------

    def open(self, path: str, flags: int | str, given: Any = None, **_: Any) -> _Opening:
        pflags = READ_FLAG if flags == "rb" else int(flags)

        async def opening() -> Handle:
            body = string(path) + struct.pack(">I", pflags) + attrs(_permissions(given))
            kind, reply = await self.request(OPEN, body)
            handle = self.expect(kind, reply, HANDLE).string()
            reply.end()
            if not 0 < len(handle) <= 256:
                raise ProtocolError("a file handle of an impossible length")
            return Handle(self, handle)

        return _Opening(opening())

    async def mkdir(self, path: str, given: Any = None) -> None:
        await self.ok(MKDIR, string(path) + attrs(_permissions(given)))

    async def stat(self, path: str) -> dict[str, int]:
        kind, reply = await self.request(STAT, string(path))
        found = self.expect(kind, reply, ATTRS).attrs()
        reply.end()
        return found

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except SftpNoSuchFile:
            return False
        return True

    async def isdir(self, path: str) -> bool:
        try:
            mode = (await self.stat(path)).get("permissions", 0)
        except SftpNoSuchFile:
            return False
        return mode & 0o170000 == 0o040000

    async def posix_rename(self, old: str, new: str) -> None:
        await self.extended("posix-rename@openssh.com", string(old) + string(new))

    async def remove(self, path: str) -> None:
        await self.ok(REMOVE, string(path))

    async def rmdir(self, path: str) -> None:
        await self.ok(RMDIR, string(path))

    async def listdir(self, path: str, limit: int = 1_000_000) -> list[str]:
        kind, reply = await self.request(OPENDIR, string(path))
        handle = self.expect(kind, reply, HANDLE).string()
        names: list[str] = []
        try:
            while len(names) < limit:
                kind, reply = await self.request(READDIR, string(handle))
                if kind == STATUS and self.status(reply)[0] == FX_EOF:
                    break
                reply = self.expect(kind, reply, NAME)
                for _ in range(reply.u32()):
                    names.append(reply.string().decode("utf-8", "surrogateescape"))
                    reply.string(), reply.attrs()
                reply.end()
        finally:
            await self.ok(CLOSE, string(handle))
        return names

    def exit(self) -> None:
        """End the session: EOF on the server's stdin."""
        if self._writer.can_write_eof():
            self._writer.write_eof()

    async def wait_closed(self) -> None:
        if self._dispatch is not None:
            await asyncio.wait({self._dispatch})
