"""The SFTP sink's plumbing: one asyncio loop in a thread (asyncssh is asyncio, the
copy engine is threads), the errors a broken link raises, and SFTP statuses as the
``OSError`` the writer understands."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import threading
from collections.abc import Awaitable
from typing import Any

from manifests.errors import EvidenceLostError

from ._ssh import theirs
from .sftpcodec import FX_NO_SUCH_FILE, FX_PERMISSION_DENIED, link_lost
from .target import TIMEOUT

__all__ = ["TIMEOUT", "SinkLostError", "_Loop", "link_errors", "offers", "os_error"]

_ERRNO = {FX_NO_SUCH_FILE: errno.ENOENT, FX_PERMISSION_DENIED: errno.EACCES}
_LINK_ERRORS = (
    ConnectionError,  # the wire client's SftpLinkLost among them
    asyncio.TimeoutError,
    concurrent.futures.TimeoutError,
    BrokenPipeError,
    EOFError,
)


def link_errors() -> tuple[type[BaseException], ...]:
    """What a broken link raises, from either transport (an ``except`` clause's
    classes: asyncssh's only once it is loaded, before which none can be raised)."""
    return (*_LINK_ERRORS, *link_lost(), *theirs("ConnectionLost", "DisconnectError"))


class SinkLostError(EvidenceLostError):
    """The connection to the server broke and did not come back in time: exit 1, with
    the last chain head the server acknowledged (what ``verify`` there will find)."""

    exit_code = 1
    hint = (
        "nothing more was sent; run 'verify' on the directory on the server: it holds up "
        "to its last seal"
    )


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    """Some asyncssh calls return an awaitable that is not a coroutine (``open``)."""
    return await awaitable


WIND_DOWN = 1.0  # seconds the cancelled requests get to unwind when the loop stops


async def _wind_down() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=WIND_DOWN)


class _Loop:
    """One asyncio loop in a daemon thread, owned by the sink."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # A broken link is reported once, as SinkLostError: not as asyncio's tracebacks
        # of the requests still in flight, nor its "socket.send() raised exception".
        self.loop.set_exception_handler(lambda loop, context: None)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="preserve-sftp", daemon=True
        )
        self._thread.start()

    def submit(self, coro: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(_awaited(coro), self.loop)

    def run(self, coro: Awaitable[Any], timeout: float | None = TIMEOUT) -> Any:
        return self.submit(coro).result(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def stop(self) -> None:
        """Requests still pending (a hung server's, a dropped session's) are cancelled
        and given a moment to unwind first: a coroutine left to the garbage collector
        would print 'Exception ignored' on the responder's terminal."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            with contextlib.suppress(Exception):
                self.submit(_wind_down()).result(WIND_DOWN + 1)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


def os_error(e: BaseException, where: str) -> OSError:
    """An SFTP status as the ``OSError`` the writer and the copy engine understand."""
    status = getattr(e, "code", None)
    code = _ERRNO.get(status, errno.EIO) if isinstance(status, int) else errno.EIO
    return OSError(code, f"{getattr(e, 'reason', e) or os.strerror(code)} (on the server)", where)


def offers(sftp: Any, what: str) -> bool:
    """Whether the server offered ``fsync@openssh.com`` / ``posix-rename@openssh.com``
    (``what``: ``fsync``, ``posix_rename``) to this session, for either transport."""
    handler = getattr(sftp, "_handler", sftp)  # asyncssh keeps it in its handler
    return bool(getattr(handler, f"_supports_{what}", getattr(handler, f"supports_{what}", False)))
