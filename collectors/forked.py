"""Work done in a forked child process, its results streamed back over a pipe: how the
timeline's walk of a whole host runs on the machine's other core while the rest of the
run (hashing, copying, all in one interpreter behind one lock) goes on.

The child only computes: it reads the host, writes length-prefixed frames (a kind byte
and a payload) to the pipe and ends with ``os._exit``, so it never touches the evidence
writer, the journal or any descriptor it inherited, never runs the parent's ``finally``
blocks or exit handlers, and never flushes a buffer it inherited. The garbage collector
is off in the child (a finalizer of an inherited object must not run there), stop
signals are left to the parent, and everything it uses is imported before the fork. The
parent reads the frames as they come, journals what they say, and kills the child when
the run is stopped. A child that dies (a signal, an exception) is an error, never a
short result taken for a whole one. Where there is no ``fork`` (or off Linux, where a
threaded process must not fork), the work runs in the calling thread instead."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import select
import signal
import struct
from collections.abc import Callable, Sequence

from ._common import LINUX
from .errors import CollectorError

Send = Callable[[bytes, bytes], None]  # (kind, payload)
_HEADER = struct.Struct("=cI")
_FAILED = b"!"  # the child's own last word: why it could not finish
_POLL_MS = 250  # how often the parent looks whether the run was stopped
_PIPE_BYTES = 1024 * 1024


def run_forked(work: Callable[[Send], None], on_frame: Send, stopped: Callable[[], bool]) -> bool:
    """Run ``work(send)`` in a child; each ``send(kind, payload)`` there becomes an
    ``on_frame(kind, payload)`` call here, in order. Returns False when the run was
    stopped (the child killed, what it sent so far delivered); raises CollectorError when
    the child failed."""
    return run_forked_all([work], on_frame, stopped)


def can_fork() -> bool:
    """Does ``run_forked_all`` run its work in children here (else in the caller)?"""
    return LINUX and hasattr(os, "fork")


def run_forked_all(
    works: Sequence[Callable[[Send], None]], on_frame: Send, stopped: Callable[[], bool]
) -> bool:
    """``run_forked`` for several works at once, each in a child of its own (one a core):
    the frames of each child come in its order, those of different children interleaved
    as they arrive. One child failing is the whole call failing (the others killed)."""
    if not can_fork():
        for work in works:
            work(on_frame)
        return not stopped()
    children: dict[int, int] = {}  # the read end of each child's pipe: its pid
    finished, failure = False, None
    try:
        for work in works:
            read_end, write_end = os.pipe()
            with contextlib.suppress(OSError, AttributeError):  # fewer wake-ups
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child's coverage is not collected)
                _child(work, [read_end, *children], write_end)
            os.close(write_end)
            children[read_end] = pid
        finished, failure = _receive(children, on_frame, stopped)
    finally:
        for read_end, pid in children.items():  # those still running: stopped, failed,
            os.close(read_end)  # or an error here (not reaped yet, so each pid is
            os.kill(pid, signal.SIGKILL)  # still its child's)
            _reap(pid)
    if not finished:
        return False
    if failure is not None:
        raise CollectorError(f"the work in a child process did not finish ({failure})")
    return True


def _child(work: Callable[[Send], None], read_ends: list[int], write_end: int) -> None:
    status = 1
    try:
        gc.disable()
        for fd in read_ends:  # its own pipe's, and those of the children forked before it
            os.close(fd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)

        def send(kind: bytes, payload: bytes) -> None:
            data = _HEADER.pack(kind, len(payload)) + payload
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view) :]

        try:
            work(send)
            status = 0
        except BaseException as e:  # noqa: BLE001 (reported to the parent, then exit)
            send(_FAILED, f"{type(e).__name__}: {e}".encode("utf-8", "backslashreplace"))
    finally:
        os._exit(status)


def _receive(
    children: dict[int, int], on_frame: Send, stopped: Callable[[], bool]
) -> tuple[bool, str | None]:
    """Deliver the children's frames until each has closed its pipe and been reaped
    (taken out of ``children``): (True, why one of them failed, or None when none did);
    (False, None) as soon as the run is stopped. Each frame is read at its own size and
    handed on as read (not appended to a buffer, sliced, copied and cut from it: 63 MB
    of bodyfile in frames of a megabyte cost the parent's thread 42 to 77 ms of CPU that
    way, 27 to 31 now, bench/RESULTS.md)."""
    poller = select.poll()
    for fd in children:
        poller.register(fd, select.POLLIN)
    while children:
        if stopped():
            return False, None
        for fd, _ in poller.poll(_POLL_MS):
            header = _read_exact(fd, _HEADER.size)
            if not header:  # the child closed the pipe between frames: all of it is in
                poller.unregister(fd)
                os.close(fd)
                status = _reap(children.pop(fd))
                if status != 0:
                    return True, (
                        f"killed by signal {-status}" if status < 0 else f"exit status {status}"
                    )
                continue
            if len(header) < _HEADER.size:
                return True, "its last frame was cut short"
            kind, size = _HEADER.unpack(header)
            payload = _read_exact(fd, size)
            if len(payload) < size:
                return True, "its last frame was cut short"
            if kind == _FAILED:
                return True, payload.decode("utf-8", "replace")
            on_frame(kind, payload)
    return True, None


def _read_exact(fd: int, size: int) -> bytes:
    """``size`` bytes from the pipe (a frame is written whole, so the rest of one is
    coming), fewer only at its end: one read for most frames, the pipe being as large
    as the largest."""
    data = os.read(fd, size)
    if len(data) == size or not data:
        return data
    parts, got = [data], len(data)
    while got < size:
        more = os.read(fd, size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _reap(pid: int) -> int:
    """The child's exit status (negative: the signal that ended it), waiting for it; 0
    when it was already reaped."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return os.waitstatus_to_exitcode(status)
