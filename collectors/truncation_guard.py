"""Reading a followed log to its end *before* another process opens or truncates it.

Polling, however fast, loses the bytes a writer adds in the last instant before a
truncation: logrotate's ``copytruncate`` drops the lines written between its copy and its
``ftruncate``, and an intruder's ``> access.log`` drops whatever came since the last look.
Linux's fanotify permission events close that gap. The guard marks every followed log:

* ``FAN_OPEN_PERM`` (any kernel with fanotify permission events, root only): another
  process's ``open`` of the log waits until the watch has read the log to its end. Both
  ``copytruncate`` and ``>`` start with an open, so the watch knows before they act.
* ``FAN_PRE_ACCESS`` (Linux 6.14 and later, on file systems that allow it: ext4, xfs,
  btrfs; not tmpfs): added for a while after such an open ("armed"), it makes the truncation
  itself wait until the watch has read every byte that is about to go.

Answers are always "allow": the guard delays, it never refuses. A mark costs nothing
for a writer that already holds the log open; an open waits for one answer (tens of
microseconds), and a descriptor opened while the log is armed waits for one at every read
and write. If the watch process dies, the kernel releases every waiting process at once.
(The kernel itself refuses an open it cannot report, when no descriptor is left for the
event: see ``EVENTS_PER_READ``.)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import threading
import time
from collections.abc import Callable

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_PRE_CONTENT = 0x8
FAN_OPEN_PERM = 0x10000
FAN_PRE_ACCESS = 0x100000
FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_ALLOW = 0x1
METADATA = struct.Struct("=IBBHQii")  # struct fanotify_event_metadata
RESPONSE = struct.Struct("=iI")  # struct fanotify_response
METADATA_VERSION = 3
# The kernel opens a descriptor for every event it hands over in one read, and refuses
# (EPERM) the open it reports when it cannot: read few at a time.
EVENTS_PER_READ = 16

Key = tuple[int, int]  # (device, inode)
Callback = Callable[[Key, int], None]  # (key, pid of the process that waits)


def _libc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None, use_errno=True)  # the C library this Python runs on (glibc, musl)
    if not hasattr(libc, "fanotify_init"):
        return None
    libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
    libc.fanotify_init.restype = ctypes.c_int
    libc.fanotify_mark.argtypes = [
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint64,
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    libc.fanotify_mark.restype = ctypes.c_int
    return libc


class TruncationGuard:
    """One fanotify group for the watch. ``on_open`` runs when another process opens a
    guarded log, ``on_access`` when an armed log is about to be truncated (or read or
    written, through a descriptor opened while it was armed) by another process; each
    runs before that process may go on."""

    def __init__(self, on_open: Callback, on_access: Callback) -> None:
        self._on_open = on_open
        self._on_access = on_access
        self._libc: ctypes.CDLL | None = None
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._pid = os.getpid()
        self.pre_content: dict[int, bool] = {}  # device -> FAN_PRE_ACCESS allowed there
        self.answered = 0
        self.failures = 0  # callbacks that raised; the waiting process was let go anyway
        self.read_errors = 0  # reads of the event queue that failed (EMFILE, ENOMEM, ...)

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def start(self) -> str | None:
        """Returns None when the guard runs, else why it cannot (the watch then polls)."""
        libc = _libc()
        if libc is None:
            return "this system has no fanotify"
        fd = libc.fanotify_init(
            FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
            os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_LARGEFILE", 0),
        )
        if fd < 0:
            err = ctypes.get_errno()
            if err == errno.EPERM:
                return "fanotify needs root (CAP_SYS_ADMIN)"
            return f"fanotify is not available ({os.strerror(err)})"
        self._libc, self._fd = libc, fd
        self._thread = threading.Thread(target=self._serve, name="watch-guard", daemon=True)
        self._thread.start()
        return None

    def _mark(self, flags: int, mask: int, fd: int) -> int:
        assert self._libc is not None
        if self._libc.fanotify_mark(self._fd, flags, mask, fd, None) == 0:
            return 0
        return ctypes.get_errno()

    def watch(self, fd: int) -> bool:
        """Guard the file open at ``fd`` against other processes' opens."""
        return self.active and self._mark(FAN_MARK_ADD, FAN_OPEN_PERM, fd) == 0

    def arm(self, fd: int, device: int) -> bool:
        """Make truncations of the file at ``fd`` wait for the watch. False where the
        kernel (before 6.14) or the file system does not allow it (remembered per device)."""
        if not self.active or self.pre_content.get(device) is False:
            return False
        err = self._mark(FAN_MARK_ADD, FAN_PRE_ACCESS, fd)
        if err in (errno.EINVAL, errno.EOPNOTSUPP):
            self.pre_content[device] = False
        elif err == 0:
            self.pre_content[device] = True
        return err == 0

    def disarm(self, fd: int) -> None:
        if self.active:
            self._mark(FAN_MARK_REMOVE, FAN_PRE_ACCESS, fd)

    def unwatch(self, fd: int) -> None:
        """Remove the open mark (an armed file must be disarmed first: a kernel before
        6.14 refuses a mask naming FAN_PRE_ACCESS, even to remove it)."""
        if self.active:
            self._mark(FAN_MARK_REMOVE, FAN_OPEN_PERM, fd)

    def close(self) -> None:
        """Stop; the kernel lets every process still waiting on the group go on."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._release()

    # -- the events --------------------------------------------------------------------

    def _serve(self) -> None:
        """Answers events until ``close``. It must not stop earlier: every process that
        opens a guarded log would then wait until the watch ends. If it ever does, the
        group is closed at once, which lets them all go."""
        try:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            while not self._closing.is_set():
                if not poller.poll(200):
                    continue
                try:
                    buf = os.read(self._fd, EVENTS_PER_READ * METADATA.size)
                except BlockingIOError:
                    continue
                except OSError:  # no descriptor for an event: the kernel refused that open
                    self.read_errors += 1
                    time.sleep(0.01)
                    continue
                # Our own opens and reads go first: a callback below may wait for a lock
                # that one of our threads holds while it waits for exactly such an answer.
                events = self._parse(buf)
                for event in sorted(events, key=lambda e: e[2] != self._pid):
                    self._answer(*event)
        finally:
            if not self._closing.is_set():
                self._release()

    def _release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    @staticmethod
    def _parse(buf: bytes) -> list[tuple[int, int, int]]:
        events = []
        offset = 0
        while offset + METADATA.size <= len(buf):
            length, version, _, _, mask, fd, pid = METADATA.unpack_from(buf, offset)
            if version != METADATA_VERSION or length < METADATA.size:
                break
            events.append((mask, fd, pid))
            offset += length
        return events

    def _answer(self, mask: int, fd: int, pid: int) -> None:
        if fd < 0:  # a queue overflow: nothing waits
            return
        try:
            if pid != self._pid:
                st = os.fstat(fd)
                callback = self._on_open if mask & FAN_OPEN_PERM else self._on_access
                callback((st.st_dev, st.st_ino), pid)
        except BaseException:  # noqa: BLE001 - the waiting process must go on whatever happens
            self.failures += 1
        finally:
            with contextlib.suppress(OSError):
                os.write(self._fd, RESPONSE.pack(fd, FAN_ALLOW))
            with contextlib.suppress(OSError):
                os.close(fd)
            self.answered += 1
