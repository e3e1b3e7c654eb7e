"""The copy proper, once a source is open and checked: read it once, hash and store the
same bytes in one pass, and journal one ``artifact`` record (or one ``error``).

Memory stays bounded by one chunk per worker (two for a copy hashed in the background,
``overlap``); runs of zeros of a sparse file stay holes; large copies write around the
page cache. Checking and opening the host file is ``copysource``'s part; choosing what to
copy and when, ``copy``'s."""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
import threading
from typing import Any

from manifests.digest import CHUNK
from manifests.errors import EvidenceLostError
from manifests.localdir import CreateDir
from manifests.sink import LocalFile
from manifests.writer import EvidenceWriter

from . import nativecopy
from .batchcopy import Batch
from .copyrequest import CopyRequest
from .generated import GeneratedStore
from .overlap import OVERLAP_FROM, WriteFailed, hash_for
from .pathmap import describe
from .stat_record import stat_fields

_ZEROS = bytes(CHUNK)


def _is_zero(chunk: memoryview, n: int) -> bool:
    # bytes == bytes is a memcmp; comparing memoryviews element-wise is 100x slower.
    return chunk.tobytes() == (_ZEROS if n == CHUNK else _ZEROS[:n])


class ByteCopier(GeneratedStore):
    """Copies an open host file into the evidence directory, journalling the result."""

    def __init__(self, writer: EvidenceWriter) -> None:
        super().__init__(writer)
        self._local = threading.local()

    def _buffers(self, count: int) -> list[memoryview]:
        """This worker's copy buffers (one, or ``overlap.IN_FLIGHT`` for a background copy)."""
        if not hasattr(self._local, "bufs"):
            self._local.bufs = []
        bufs: list[mmap.mmap] = self._local.bufs
        while len(bufs) < count:  # page-aligned, as writes around the cache need
            bufs.append(mmap.mmap(-1, CHUNK))
        return [memoryview(b) for b in bufs[:count]]

    def _copy_checked(
        self, fd: int, opened: os.stat_result, req: CopyRequest, batch: Batch | None = None
    ) -> dict[str, Any] | None:
        """Copy ``fd`` (the regular file ``opened`` describes) once room is reserved for it:
        in a ``batch``, its room reserved already when the file still fits."""
        size_at_open = opened.st_size
        end = size_at_open if req.limit is None else min(size_at_open, req.offset + req.limit)
        wanted = max(0, end - req.offset)
        if batch is not None and batch.admits(wanted):  # the batch reserved its room
            return self._store_copy(fd, opened, req, wanted, batch)
        sparse = self._keeps_holes(opened)
        needed = self._space_needed(opened, wanted, sparse)
        if not self._admit(wanted, needed, req.collector, req.source, stat=stat_fields(opened)):
            return None
        try:
            return self._store_copy(fd, opened, req, wanted, batch)
        finally:
            self._release(needed)

    def _store_copy(
        self,
        fd: int,
        opened: os.stat_result,
        req: CopyRequest,
        wanted: int,
        batch: Batch | None = None,
    ) -> dict[str, Any] | None:
        """The copy proper, once the room for it is reserved: read, hash, store, journal.

        In a ``batch`` the name is claimed and announced already, the file is created
        under it, and the record joins the batch's (journaled together, ``batchcopy``)."""
        source, collector, offset = req.source, req.collector, req.offset
        sparse = self._keeps_holes(opened)
        rel = self._claim(req.rel) if batch is None else req.rel
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
        h = hash_for(wanted, local=isinstance(out, LocalFile))
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
        self.counters.add(stored=1, bytes=done)
        record = artifact_fields(
            req, rel, opened, done, wanted, sha256, after.st_size, after.st_mtime_ns
        )
        if batch is not None:
            batch.records.append(("artifact", record))
            return record
        record = self.journal.append("artifact", **record)
        self.writer.commit(rel)
        self.journal.seal_if_due()
        return record

    def _copy_native(
        self, req: CopyRequest, before: os.stat_result, batch: Batch, out: CreateDir
    ) -> bool:
        """Copy a batch's small file in C (``nativecopy``) to its announced name in
        ``out``; False, with nothing stored or journaled, when the Python path must copy
        it instead."""
        if req.dir_fd is None:
            return False
        out_name = os.fsencode(req.rel.rpartition("/")[2])
        copied = nativecopy.copy_small(req.dir_fd, req.name, before, batch.room, out, out_name)
        if copied is None:
            return False
        admitted = batch.admits(copied.opened.st_size)  # C copied only what fits
        assert admitted
        self.read.add(copied.size)
        self.counters.add(stored=1, bytes=copied.size)
        record = artifact_fields(
            req,
            req.rel,
            copied.opened,
            copied.size,
            copied.opened.st_size,
            copied.sha256,
            copied.size_after,
            copied.mtime_ns_after,
        )
        batch.records.append(("artifact", record))
        return True

    def _discard_announced(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.writer.discard_announced(rel)


def artifact_fields(
    req: CopyRequest,
    rel: str,
    opened: os.stat_result,
    done: int,
    wanted: int,
    sha256: str,
    size_after: int,
    mtime_ns_after: int,
) -> dict[str, Any]:
    """The ``artifact`` record of ``done`` bytes of ``req`` stored as ``rel`` (of the
    ``wanted`` ones), the source ``opened`` as described, and as it was once read."""
    size_at_open = opened.st_size
    return dict(
        collector=req.collector,
        path=rel,
        size=done,
        sha256=sha256,
        source={**describe(req.source), "stat": stat_fields(opened)},
        range={"offset": req.offset, "end": req.offset + done},
        size_at_open=size_at_open,
        size_after=size_after,
        grew=size_after > size_at_open,
        changed_during_read=size_after != size_at_open or mtime_ns_after != opened.st_mtime_ns,
        truncated_during_read=done < wanted,
        **req.fields,
    )
