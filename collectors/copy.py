"""The copy engine: read a source once, hash and store the same bytes in one pass.

Every collector stores bytes through here, so the rules live in one place: sources are
opened read-only with ``O_NOFOLLOW`` (and ``O_NOATIME`` where the kernel allows), only
regular files are read, the descriptor is checked to be the file that was ``lstat``-ed,
at most the size seen at open is copied (a growing log is cut at a recorded offset), and
memory stays bounded by one chunk per worker. Each result becomes exactly one journal
record: ``artifact``, ``skipped`` or ``error``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.digest import CHUNK
from manifests.journal import Journal

from .errors import OutputFull
from .pathmap import describe
from .stat_record import kind_of, stat_fields

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)
_ZEROS = bytes(CHUNK)
_IN_FLIGHT = 64  # queued copies per worker pool; bounds memory on huge trees
# Free space always left on the output, so the journal, SHA256SUMS and the manifest can
# still be written and sealed after collection stops for lack of room.
SPACE_MARGIN = 4 * 1024 * 1024


@dataclass
class Counters:
    stored: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def as_dict(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "skipped": self.skipped,
            "failed": self.failed,
            "bytes": self.bytes,
        }


def _open_source(path: bytes, follow: bool = False, dir_fd: int | None = None) -> int:
    flags = _READ_FLAGS & ~os.O_NOFOLLOW if follow else _READ_FLAGS
    try:
        return os.open(path, flags | _NOATIME, dir_fd=dir_fd)
    except PermissionError:
        if not _NOATIME:
            raise
        # O_NOATIME is refused (EPERM) on files we do not own unless we are root.
        return os.open(path, flags, dir_fd=dir_fd)


def _is_zero(buf: bytearray, n: int) -> bool:
    # bytearray == bytes is a memcmp; comparing memoryviews is 100x slower.
    return buf == _ZEROS if n == CHUNK else buf[:n] == _ZEROS[:n]


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


class CopyEngine:
    """Stores files and generated data under an evidence directory, journalling each."""

    def __init__(
        self,
        root: Path,
        journal: Journal,
        max_file_size: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.root = root
        self.journal = journal
        self.max_file_size = max_file_size
        self.counters = Counters()
        self.full = threading.Event()
        # Set when the responder interrupts the run: copies in progress stop at the next
        # chunk (a 100 GiB file must not hold up the seal) and queued ones are not started.
        self.stopped = threading.Event()
        self._taken: set[str] = set()
        self._made_dirs: set[str] = set()
        self._root_str = os.fspath(root)
        self._taken_lock = threading.Lock()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=workers or 2 * (os.cpu_count() or 2))
        self._slots = threading.BoundedSemaphore(_IN_FLIGHT)
        self._pending: set[Future[Any]] = set()
        self._pending_lock = threading.Lock()
        self.on_error: Callable[[dict[str, Any]], None] | None = None

    # -- journal helpers -------------------------------------------------------------

    def record_error(
        self, collector: str, source: bytes | None, reason: str, **fields: Any
    ) -> dict[str, Any]:
        self.counters.add(failed=1)
        src = describe(source) if source is not None else None
        record = self.journal.append(
            "error", collector=collector, source=src, reason=reason, **fields
        )
        if self.on_error:
            self.on_error(record)
        return record

    def record_skip(self, collector: str, source: bytes, reason: str, **fields: Any) -> None:
        self.counters.add(skipped=1)
        self.journal.append(
            "skipped", collector=collector, source=describe(source), reason=reason, **fields
        )

    def _claim(self, rel: str) -> str:
        """Reserve a stored path; a second claim of the same name gets a ``~N`` suffix."""
        with self._taken_lock:
            candidate, n = rel, 1
            while candidate in self._taken:
                n += 1
                candidate = f"{rel}~{n}"
            self._taken.add(candidate)
            return candidate

    def _buffer(self) -> bytearray:
        if not hasattr(self._local, "buf"):
            self._local.buf = bytearray(CHUNK)
        return self._local.buf

    def _create(self, rel: str) -> int:
        dest = os.path.join(self._root_str, rel)
        parent = os.path.dirname(dest)
        if parent not in self._made_dirs:  # one mkdir per directory, not one per file
            os.makedirs(parent, exist_ok=True)
            self._made_dirs.add(parent)
        return os.open(
            dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )

    def _discard(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._root_str, rel))

    def _out_of_space(self, collector: str, source: bytes | None, rel: str) -> None:
        self._discard(rel)
        if not self.full.is_set():
            self.full.set()
            self.record_error(
                collector,
                source,
                "output disk full: collection stopped",
                errno="ENOSPC",
                stored_path=rel,
            )

    def _room_for(self, size: int, collector: str, source: bytes | None, rel: str) -> bool:
        """Stop before the output is full, keeping SPACE_MARGIN for the seal."""
        st = os.statvfs(self.root)
        if st.f_bavail * st.f_frsize - size >= SPACE_MARGIN:
            return True
        self._out_of_space(collector, source, rel)
        return False

    # -- generated artifacts ---------------------------------------------------------

    def store_bytes(self, rel: str, data: bytes, collector: str, **fields: Any) -> dict | None:
        """Store data the tool produced itself (JSON snapshots, text views)."""
        if self.full.is_set() or self.stopped.is_set():
            return None
        rel = self._claim(rel)
        if not self._room_for(len(data), collector, None, rel):
            raise OutputFull()
        try:
            fd = self._create(rel)
            try:
                _write_all(fd, memoryview(data))
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                self._out_of_space(collector, None, rel)
                raise OutputFull() from e
            raise
        self.counters.add(stored=1, bytes=len(data))
        return self.journal.append(
            "artifact",
            collector=collector,
            path=rel,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            **fields,
        )

    # -- copying files ---------------------------------------------------------------

    def submit(self, source: bytes, rel: str, collector: str, **fields: Any) -> None:
        """Copy in the background; ``drain`` waits for everything submitted."""
        if self.full.is_set() or self.stopped.is_set():
            return
        self._slots.acquire()
        future = self._pool.submit(self._preserve_guarded, source, rel, collector, **fields)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _preserve_guarded(self, source: bytes, rel: str, collector: str, **fields: Any) -> None:
        """A background copy must never fail silently: any surprise becomes an error record."""
        try:
            self.preserve(source, rel, collector, **fields)
        except Exception as e:
            self.record_error(
                collector, source, f"internal error while copying: {type(e).__name__}: {e}"
            )

    def _done(self, future: Future[Any]) -> None:
        self._slots.release()
        with self._pending_lock:
            self._pending.discard(future)

    def drain(self) -> None:
        while True:
            with self._pending_lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    def preserve(
        self,
        source: bytes,
        rel: str,
        collector: str,
        limit: int | None = None,
        offset: int = 0,
        magic_link: bool = False,
        parent_id: tuple[int, int] | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """Copy one file; returns its artifact record, or None if skipped or failed.

        ``offset``/``limit`` copy a byte range (log increments); by default the whole
        file as it was at open.

        ``magic_link=True`` is for kernel "magic" links such as ``/proc/PID/exe``, which
        reach a file even after it was deleted or replaced on disk: the link is followed
        (``stat``, and ``open`` without ``O_NOFOLLOW``), and the descriptor must still be
        the regular file that ``stat`` saw. Never pass it for paths an attacker can plant.

        ``parent_id`` is the (st_dev, st_ino) of the directory a walk listed ``source``
        in: the file is then opened in that very directory, so a directory on the way
        swapped for a symlink since the walk (to /etc, say) is refused, not followed."""
        if self.full.is_set() or self.stopped.is_set():
            return None
        if parent_id is None:
            return self._preserve_at(
                source, None, source, rel, collector, limit, offset, magic_link, fields
            )
        directory, name = os.path.split(source)
        try:
            dir_fd = os.open(
                directory or b".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError as e:
            self.record_error(
                collector, source, f"its directory cannot be opened: {e.strerror}; not read"
            )
            return None
        try:
            st = os.fstat(dir_fd)
            if (st.st_dev, st.st_ino) != parent_id:
                self.record_error(
                    collector, source, "its directory was replaced since it was listed; not read"
                )
                return None
            return self._preserve_at(
                source, dir_fd, name, rel, collector, limit, offset, False, fields
            )
        finally:
            os.close(dir_fd)

    def _preserve_at(
        self,
        source: bytes,
        dir_fd: int | None,
        name: bytes,
        rel: str,
        collector: str,
        limit: int | None,
        offset: int,
        magic_link: bool,
        fields: dict[str, Any],
    ) -> dict[str, Any] | None:
        """``preserve`` proper; ``name`` is opened relative to ``dir_fd`` when given."""
        try:
            before = os.stat(name) if magic_link else os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            self.record_error(collector, source, "vanished before it could be read")
            return None
        except OSError as e:
            self.record_error(collector, source, f"cannot stat: {e.strerror}")
            return None
        if not stat.S_ISREG(before.st_mode):
            extra: dict[str, Any] = {}
            if stat.S_ISLNK(before.st_mode):
                with contextlib.suppress(OSError):
                    extra["target"] = describe(os.readlink(name, dir_fd=dir_fd))
            self.record_skip(
                collector,
                source,
                f"{kind_of(before.st_mode)}: not read",
                stat=stat_fields(before),
                **extra,
            )
            return None
        cap = self.max_file_size
        if cap is not None and before.st_size - offset > cap and limit is None:
            self.record_error(
                collector,
                source,
                f"larger than --max-file-size ({before.st_size} > {cap} bytes)",
                stat=stat_fields(before),
            )
            return None
        try:
            fd = _open_source(name, follow=magic_link, dir_fd=dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:  # swapped for a symlink after lstat
                self.record_skip(collector, source, "symlink: not followed")
            elif e.errno == errno.ENOENT:
                self.record_error(collector, source, "vanished before it could be read")
            else:
                self.record_error(
                    collector, source, f"cannot open: {e.strerror}", stat=stat_fields(before)
                )
            return None
        try:
            return self._copy_open(fd, before, source, rel, collector, limit, offset, fields)
        finally:
            os.close(fd)

    def reserve(self, rel: str) -> str:
        """Claim a stored path for a file an external command will write (then ``adopt``)."""
        rel = self._claim(rel)
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        return rel

    def adopt(self, rel: str, collector: str, **fields: Any) -> dict[str, Any] | None:
        """Journal a file that a command run by the tool wrote inside the evidence directory
        (``wevtutil epl``, ``log collect``): hash it as it is and make it read-only."""
        path = self.root / rel
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            self.record_error(
                collector,
                None,
                f"output of the command is missing: {e.strerror}",
                stored_path=rel,
                **fields,
            )
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.record_error(
                    collector,
                    None,
                    "command output is not a regular file",
                    stored_path=rel,
                    **fields,
                )
                return None
            h = hashlib.sha256()
            size = 0
            while chunk := os.read(fd, CHUNK):
                h.update(chunk)
                size += len(chunk)
            os.fchmod(fd, 0o444)
        finally:
            os.close(fd)
        self.counters.add(stored=1, bytes=size)
        return self.journal.append(
            "artifact", collector=collector, path=rel, size=size, sha256=h.hexdigest(), **fields
        )

    def _copy_open(
        self,
        fd: int,
        before: os.stat_result,
        source: bytes,
        rel: str,
        collector: str,
        limit: int | None,
        offset: int,
        fields: dict[str, Any],
    ) -> dict[str, Any] | None:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(
            opened.st_mode
        ):
            self.record_error(
                collector,
                source,
                "source was replaced between lstat and open; not read",
                stat=stat_fields(opened),
            )
            return None
        size_at_open = opened.st_size
        end = size_at_open if limit is None else min(size_at_open, offset + limit)
        wanted = max(0, end - offset)
        # Sparse sources (lastlog, VM images) keep their holes in the copy.
        sparse = opened.st_blocks * 512 < opened.st_size
        rel = self._claim(rel)
        if not self._room_for(0 if sparse else wanted, collector, source, rel):
            return None
        try:
            out = self._create(rel)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                self._out_of_space(collector, source, rel)
                return None
            raise
        h = hashlib.sha256()
        done = 0
        buf = self._buffer()
        view = memoryview(buf)
        reader = io.FileIO(fd, "rb", closefd=False)
        try:
            if offset:
                os.lseek(fd, offset, os.SEEK_SET)
            while done < wanted:
                if self.stopped.is_set():
                    os.close(out)
                    self._discard(rel)
                    self.record_error(
                        collector,
                        source,
                        f"copy interrupted after {done} of {wanted} bytes; not stored",
                        stat=stat_fields(opened),
                    )
                    return None
                n = reader.readinto(view[: min(CHUNK, wanted - done)])
                if not n:
                    break  # the file shrank while we read it
                chunk = view[:n]
                h.update(chunk)
                if sparse and _is_zero(buf, n):
                    os.lseek(out, n, os.SEEK_CUR)
                else:
                    _write_all(out, chunk)
                done += n
            if sparse:
                os.ftruncate(out, done)
            os.utime(out, ns=(opened.st_atime_ns, opened.st_mtime_ns))
            os.fchmod(out, 0o444)
        except OSError as e:
            os.close(out)
            if e.errno == errno.ENOSPC:
                self._out_of_space(collector, source, rel)
                return None
            self._discard(rel)
            self.record_error(
                collector,
                source,
                f"read failed after {done} bytes: {e.strerror}",
                stat=stat_fields(opened),
            )
            return None
        os.close(out)
        after = os.fstat(fd)
        changed = after.st_size != opened.st_size or after.st_mtime_ns != opened.st_mtime_ns
        self.counters.add(stored=1, bytes=done)
        record = self.journal.append(
            "artifact",
            collector=collector,
            path=rel,
            size=done,
            sha256=h.hexdigest(),
            source={**describe(source), "stat": stat_fields(opened)},
            range={"offset": offset, "end": offset + done},
            size_at_open=size_at_open,
            size_after=after.st_size,
            grew=after.st_size > size_at_open,
            changed_during_read=changed,
            truncated_during_read=done < wanted,
            **fields,
        )
        self.journal.seal_if_due()
        return record
