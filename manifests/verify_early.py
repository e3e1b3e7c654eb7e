"""The big files of an evidence directory hashed by a forked child while the journal is
read, so the two costs of ``verify`` overlap on two cores.

Reading the journal is interpreter work (a strict parse and a chain hash per line) and
holds the interpreter lock; hashing big files is not, but in a thread it waits for that
lock at every chunk. A child process has its own. It is given what the walk saw of each
big regular file (path, device, inode) and hashes only a file that is still that one, so
its digest stands for the file the walk listed, exactly as the parent's own check does.
Anything it could not hash (an error, a swapped file, a child that died or was never
started) is simply absent, and the parent checks that file itself as before.

The child is only forked when this process runs one thread (a fork taken while another
thread holds a lock can deadlock the child), and is abandoned (killed) once the journal
shows image pieces: those files are hashed piece by piece by the parent anyway."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import stat
import threading
from collections.abc import Callable
from types import TracebackType

from .verify_index import BIG, s64

Hasher = Callable[[bytes, int, int], "str | None"]  # (stored path, dev, ino): SHA-256 or None
_F_SETPIPE_SZ = 1031
_PR_SET_PDEATHSIG = 1
MIN_TOTAL = 64 * 1024 * 1024  # below this the fork costs more than it saves


def _die_with_parent() -> None:
    """A verify killed outright (SIGKILL) leaves no child hashing on after it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call took effect
        os._exit(1)


def only_thread() -> bool:
    """Whether this process runs one thread: the one condition a fork is safe under."""
    return threading.active_count() == 1


class EarlyHashes:
    """``offer`` each big file the walk finds, ``start`` the child, ``digest`` later.
    How a file is opened and checked is the caller's (``verify_files.walked_hasher``)."""

    def __init__(self, root: os.PathLike[str]) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.files: list[tuple[bytes, int, int]] = []
        self.total = 0
        self.pid: int | None = None
        self._pipe: int | None = None
        self._digests: dict[bytes, tuple[int, int, str]] | None = None
        self._lock = threading.Lock()  # the hashing threads ask at once; one reads

    @staticmethod
    def wants(st: os.stat_result) -> bool:
        """A big regular file with one name: what the parent would hash in a thread."""
        return st.st_size >= BIG and st.st_nlink == 1 and stat.S_ISREG(st.st_mode)

    def offer(self, rel: bytes, st: os.stat_result) -> None:
        self.files.append((rel, s64(st.st_dev), s64(st.st_ino)))
        self.total += st.st_size

    def start(self, hasher: Hasher) -> None:
        """Fork the child, which hashes each file offered with ``hasher`` (a stored
        file's SHA-256, or None), if it is worth it and safe."""
        if self.total < MIN_TOTAL or not only_thread():
            return
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, 1 << 20)  # the child never waits on us
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:  # the child: hash, write, and leave without any of the parent's exits
            status = 1
            try:
                os.close(read_end)
                _die_with_parent()
                self._hash_all(hasher, write_end)
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        self.pid, self._pipe = pid, read_end

    def _hash_all(self, hasher: Hasher, out: int) -> None:
        for rel, dev, ino in self.files:
            digest = hasher(rel, dev, ino)
            if digest is None:
                continue  # the parent checks it itself, and says why
            line = b"%d %d %s %s\n" % (dev, ino, digest.encode(), rel.hex().encode())
            view = memoryview(line)
            while view:
                view = view[os.write(out, view) :]

    def abandon(self) -> None:
        """Stop the child (nothing it hashed is used)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._finish(use=False)

    def digest(self, rel: bytes, dev: int, ino: int) -> str | None:
        """The child's SHA-256 of ``rel`` if it hashed that very file, else None (waits
        for the child the first time)."""
        if self._digests is None:
            self._finish(use=True)
        assert self._digests is not None
        found = self._digests.get(rel)
        if found is None or found[:2] != (dev, ino):
            return None
        return found[2]

    def _finish(self, use: bool) -> None:
        with self._lock:
            if self._digests is None:
                self._digests = self._collect(use)

    def _collect(self, use: bool) -> dict[bytes, tuple[int, int, str]]:
        digests: dict[bytes, tuple[int, int, str]] = {}
        if self._pipe is None:
            return digests
        chunks = []
        if use:
            while chunk := os.read(self._pipe, 1 << 20):
                chunks.append(chunk)
        os.close(self._pipe)
        self._pipe = None
        assert self.pid is not None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        if not use:
            return digests
        data = b"".join(chunks)
        if os.waitstatus_to_exitcode(status) != 0:  # a child cut short: its last line may be torn
            data = data[: data.rfind(b"\n") + 1]
        for line in data.splitlines():
            try:
                dev, ino, digest, rel = line.split(b" ")
                digests[bytes.fromhex(rel.decode())] = (int(dev), int(ino), digest.decode())
            except ValueError:
                continue  # not a line the child wrote whole: that file is hashed here
        return digests

    def __enter__(self) -> EarlyHashes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.pid is not None:
            self.abandon()
        os.close(self.root_fd)
