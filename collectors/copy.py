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
import io
import mmap
import os
import stat
import threading
from collections.abc import Callable, Iterable
from typing import Any

from manifests import longpath
from manifests.digest import CHUNK
from manifests.errors import EvidenceLostError
from manifests.sink import LocalFile
from manifests.writer import EvidenceWriter

from .batchcopy import BATCH_FILES, Batch, copy_batch
from .copyqueue import CopyQueue
from .generated import GeneratedStore
from .overlap import OVERLAP_FROM, WriteFailed, hash_for
from .pathmap import describe
from .source import open_source
from .stat_record import kind_of, stat_fields
from .walk import DirId

_ZEROS = bytes(CHUNK)


def _is_zero(chunk: memoryview, n: int) -> bool:
    # bytes == bytes is a memcmp; comparing memoryviews element-wise is 100x slower.
    return chunk.tobytes() == (_ZEROS if n == CHUNK else _ZEROS[:n])


class CopyEngine(GeneratedStore):
    """Stores files and generated data under an evidence directory, journalling each."""

    def __init__(
        self, writer: EvidenceWriter, max_file_size: int | None = None, workers: int | None = None
    ) -> None:
        super().__init__(writer)
        self.max_file_size = max_file_size
        self._local = threading.local()
        # One worker a core: a small file's copy is a dozen system calls between which
        # the workers hand the GIL to each other; four on two cores spent more on that
        # hand-off than they gained (bench/RESULTS.md, issue 14).
        self._work = CopyQueue(workers or max(2, os.cpu_count() or 2))
        # Set when the evidence directory vanished under a background copy.
        self.lost: EvidenceLostError | None = None

    def _buffers(self, count: int) -> list[memoryview]:
        """This worker's copy buffers (one, or ``overlap.IN_FLIGHT`` for a background copy)."""
        if not hasattr(self._local, "bufs"):
            self._local.bufs = []
        bufs: list[mmap.mmap] = self._local.bufs
        while len(bufs) < count:  # page-aligned, as writes around the cache need
            bufs.append(mmap.mmap(-1, CHUNK))
        return [memoryview(b) for b in bufs[:count]]

    # -- copying files ---------------------------------------------------------------

    def submit(self, source: bytes, rel: str, collector: str, **fields: Any) -> None:
        """Copy in the background; ``drain`` waits for everything submitted."""
        if self.stopped.is_set() or self._skipped_when_full(collector, source, None):
            return
        self._queue(collector, source, self.preserve, source, rel, collector, **fields)

    def submit_listed(
        self,
        entries: Iterable[tuple[bytes, DirId]],
        dest: Callable[[bytes], str],
        collector: str,
    ) -> None:
        """Copy a walk's files (path, directory listed in) to ``dest(path)`` in the
        background, those of one directory in batches (``batchcopy``)."""
        group: list[tuple[bytes, str]] = []
        parent: DirId | None = None
        for path, parent_id in entries:
            if self.stopped.is_set():  # interrupted (a full drive is not: each file is skipped)
                return
            if group and (parent_id != parent or len(group) >= BATCH_FILES):
                self._queue(collector, group[0][0], copy_batch, self, group, collector, parent)
                group = []
            parent = parent_id
            group.append((path, dest(path)))
        if group and not self.stopped.is_set():
            self._queue(collector, group[0][0], copy_batch, self, group, collector, parent)

    def _queue(
        self, collector: str, source: bytes, work: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        self._work.put(self._guarded, collector, source, work, *args, **kw)

    def _guarded(
        self, collector: str, source: bytes, work: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        """A background copy must never fail silently: any surprise becomes an error record."""
        try:
            work(*args, **kw)
        except EvidenceLostError as e:
            self.lost = self.lost or e
            self.stopped.set()
        except Exception as e:
            self.record_error(
                collector, source, f"internal error while copying: {type(e).__name__}: {e}"
            )

    def drain(self) -> None:
        """Wait for every copy submitted so far."""
        self._work.drain()

    def raise_if_lost(self) -> None:
        """Re-raise, in the collector's thread, a loss a background copy ran into."""
        if self.lost is not None:
            raise self.lost

    def shutdown(self) -> None:
        self._work.shutdown()

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
        if self.stopped.is_set() or self._skipped_when_full(collector, source, None):
            return None
        if parent_id is None:
            return self._preserve_at(
                source, None, source, rel, collector, limit, offset, magic_link, fields
            )
        directory, name = os.path.split(source)
        dir_fd = self._open_listed(directory, parent_id, [source], collector)
        if dir_fd is None:
            return None
        try:
            return self._preserve_at(
                source, dir_fd, name, rel, collector, limit, offset, False, fields
            )
        finally:
            os.close(dir_fd)

    def _open_listed(
        self, directory: bytes, parent_id: DirId, sources: list[bytes], collector: str
    ) -> int | None:
        """The directory a walk listed ``sources`` in, opened (at any depth) and checked
        to be that very directory; None, with an error journaled for each source, if not."""
        try:
            dir_fd = longpath.open_dir(directory or b".")
        except OSError as e:
            reason = f"its directory cannot be opened: {e.strerror}; not read"
        else:
            st = os.fstat(dir_fd)
            if (st.st_dev, st.st_ino) == parent_id:
                return dir_fd
            os.close(dir_fd)
            reason = "its directory was replaced since it was listed; not read"
        for source in sources:
            self.record_error(collector, source, reason)
        return None

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
        before = self._examine(source, dir_fd, name, collector, magic_link)
        if before is None:
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
        return self._open_and_copy(
            source, dir_fd, name, before, rel, collector, limit, offset, magic_link, fields
        )

    def _examine(
        self, source: bytes, dir_fd: int | None, name: bytes, collector: str, magic_link: bool
    ) -> os.stat_result | None:
        """The ``lstat`` of a regular file to copy; anything else is journaled (skipped,
        or an error) and gives None."""
        try:
            before = os.stat(name) if magic_link else os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            self.record_error(collector, source, "vanished before it could be read")
            return None
        except OSError as e:
            self.record_error(collector, source, f"cannot stat: {e.strerror}")
            return None
        if stat.S_ISREG(before.st_mode):
            return before
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

    def _open_and_copy(
        self,
        source: bytes,
        dir_fd: int | None,
        name: bytes,
        before: os.stat_result,
        rel: str,
        collector: str,
        limit: int | None,
        offset: int,
        magic_link: bool,
        fields: dict[str, Any],
        batch: Batch | None = None,
    ) -> dict[str, Any] | None:
        """Open the file ``before`` describes and copy it (into ``batch`` when given)."""
        try:
            fd = open_source(name, follow=magic_link, dir_fd=dir_fd)
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
            return self._copy_open(fd, before, source, rel, collector, limit, offset, fields, batch)
        finally:
            os.close(fd)

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
        batch: Batch | None = None,
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
        if batch is not None and batch.admits(wanted):  # the batch reserved its room
            return self._store_copy(
                fd, opened, source, rel, collector, offset, wanted, fields, batch
            )
        sparse = self._keeps_holes(opened)
        needed = self._space_needed(opened, wanted, sparse)
        if not self._admit(wanted, needed, collector, source, stat=stat_fields(opened)):
            return None
        try:
            return self._store_copy(
                fd, opened, source, rel, collector, offset, wanted, fields, batch
            )
        finally:
            self._release(needed)

    def _store_copy(
        self,
        fd: int,
        opened: os.stat_result,
        source: bytes,
        rel: str,
        collector: str,
        offset: int,
        wanted: int,
        fields: dict[str, Any],
        batch: Batch | None = None,
    ) -> dict[str, Any] | None:
        """The copy proper, once the room for it is reserved: read, hash, store, journal.

        In a ``batch`` the name is claimed and announced already, the file is created
        under it, and the record joins the batch's (journaled together, ``batchcopy``)."""
        size_at_open = opened.st_size
        sparse = self._keeps_holes(opened)
        if batch is None:
            rel = self._claim(rel)
        discard = self._discard if batch is None else self._discard_announced
        try:
            out = self.writer.create_file(rel) if batch is None else batch.create(rel)
        except EvidenceLostError:
            raise
        except OSError as e:
            if e.errno == errno.ENOSPC:
                self._out_of_space(collector, source, rel)
                return None
            raise
        h = hash_for(wanted)
        if wanted >= OVERLAP_FROM and isinstance(out, LocalFile):
            out.write_around_cache()
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(fd, offset, wanted, os.POSIX_FADV_SEQUENTIAL)
        views = self._buffers(h.buffers)
        done = 0
        turn = 0
        reader = io.FileIO(fd, "rb", closefd=False)
        tally = self.read.slot()
        writing = False  # which side failed: the host's file, or the evidence drive
        try:
            if offset:
                os.lseek(fd, offset, os.SEEK_SET)
            while done < wanted:
                if self.stopped.is_set():
                    h.close()
                    out.close()
                    discard(rel)
                    self.record_error(
                        collector,
                        source,
                        f"copy interrupted after {done} of {wanted} bytes; not stored",
                        stat=stat_fields(opened),
                    )
                    return None
                view = views[turn]
                turn = (turn + 1) % len(views)
                h.ready_to_reuse()
                n = reader.readinto(view[: min(CHUNK, wanted - done)])
                if not n:
                    break  # the file shrank while we read it
                chunk = view[:n]
                h.update(chunk)
                if sparse and _is_zero(chunk, n):
                    h.skip(out, n)
                else:
                    h.write(out, chunk)
                done += n
                tally[0] += n
            h.settle()
            writing = True
            out.finish(done, (opened.st_atime_ns, opened.st_mtime_ns))
        except (OSError, WriteFailed) as failure:
            h.close()
            out.close()
            writing = writing or isinstance(failure, WriteFailed)
            cause = failure.cause if isinstance(failure, WriteFailed) else failure
            if cause.errno == errno.ENOSPC:
                if batch is not None:
                    discard(rel)  # (``_out_of_space`` removes a partial name only)
                self._out_of_space(collector, source, rel)
                return None
            discard(rel)
            failed = "writing the copy to the evidence drive failed" if writing else "read failed"
            self.record_error(
                collector,
                source,
                f"{failed} after {done} bytes: {cause.strerror}",
                stat=stat_fields(opened),
            )
            return None
        finally:
            h.close()
        sha256 = h.hexdigest()
        out.close()
        after = os.fstat(fd)
        changed = after.st_size != opened.st_size or after.st_mtime_ns != opened.st_mtime_ns
        self.counters.add(stored=1, bytes=done)
        record = dict(
            collector=collector,
            path=rel,
            size=done,
            sha256=sha256,
            source={**describe(source), "stat": stat_fields(opened)},
            range={"offset": offset, "end": offset + done},
            size_at_open=size_at_open,
            size_after=after.st_size,
            grew=after.st_size > size_at_open,
            changed_during_read=changed,
            truncated_during_read=done < wanted,
            **fields,
        )
        if batch is not None:
            batch.records.append(("artifact", record))
            return record
        record = self.journal.append("artifact", **record)
        self.writer.commit(rel)
        self.journal.seal_if_due()
        return record

    def _discard_announced(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.writer.discard_announced(rel)
