"""The small files a walk listed in one directory, copied as one batch.

A tree of small files costs per file, not per byte: through ``CopyEngine.preserve`` each
one opens and checks its directory, asks the drive for free space twice, is written
under a ``%part`` name and renamed, and has its own journal write. Here up to
``BATCH_FILES`` files of one directory go together: the directory is opened and checked
once, room is reserved once, one ``begin`` record announces the batch's stored names,
each file is created exclusively under its final name (read-only from the start), and
the batch's ``artifact`` records reach the journal in one write, still one record a file.

A run killed mid-batch leaves announced files without an ``artifact`` record: ``verify``
names each of them an incomplete copy, as it does a ``%part`` file. The announcement is
in the journal file before the first of its files is created, which holds where a
journal line written is in the file before anything created after it: a local drive
(``EvidenceWriter.writes_in_order``). Elsewhere (SFTP), and for files that need more than
a plain copy (large, sparse, over ``--max-file-size``), each file takes ``preserve``.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from manifests.digest import CHUNK
from manifests.errors import EvidenceLostError
from manifests.localdir import CreateDir
from manifests.sink import SinkFile
from manifests.writer import EvidenceWriter

from . import nativecopy
from .copyrequest import CopyRequest
from .walk import DirId

if TYPE_CHECKING:
    from .copy import CopyEngine

BATCH_FILES = 64  # files of one directory a batch: one journal write, one announcement
SMALL = CHUNK  # at most this size at lstat: copied in a batch (one read, inline hash)


class Batch:
    """One batch in flight: the room still reserved for it, the records it made."""

    def __init__(self, writer: EvidenceWriter, room: int) -> None:
        self.writer = writer
        self.room = room
        self.records: list[tuple[str, dict[str, Any]]] = []

    def admits(self, size: int) -> bool:
        """Does ``size`` fit in the room reserved (a file that grew since its lstat may
        not: it is then admitted on its own)?"""
        if size > self.room:
            return False
        self.room -= size
        return True

    def create(self, rel: str) -> SinkFile:
        return self.writer.create_announced(rel)


def copy_batch(
    engine: CopyEngine, entries: list[tuple[bytes, str]], collector: str, parent_id: DirId
) -> None:
    """Copy ``entries`` (source path, stored path), all listed in the directory
    ``parent_id``, journaling one outcome each, as ``preserve`` would."""
    if not engine.writer.writes_in_order or len(entries) == 1:
        for source, rel in entries:
            engine.preserve(source, rel, collector, parent_id=parent_id)
        return
    directory = os.path.dirname(entries[0][0])
    dir_fd = engine._open_listed(directory, parent_id, [s for s, _ in entries], collector)
    if dir_fd is None:
        return
    try:
        _copy_listed(engine, dir_fd, entries, collector)
    finally:
        os.close(dir_fd)


def _copy_listed(
    engine: CopyEngine, dir_fd: int, entries: list[tuple[bytes, str]], collector: str
) -> None:
    small: list[tuple[CopyRequest, os.stat_result]] = []
    single: list[CopyRequest] = []
    cap = engine.max_file_size
    for source, rel in entries:
        if engine.stopped.is_set():
            return
        if engine._skipped_when_full(collector, source, None):
            continue
        req = CopyRequest(source, rel, collector).at(dir_fd)
        before = engine._examine(req)
        if before is None:
            continue
        size = before.st_size
        if size > SMALL or (cap is not None and size > cap) or engine._keeps_holes(before):
            single.append(req)
        else:
            small.append((req, before))
    room = sum(before.st_size for _, before in small)
    if small and engine._take_room(room) is None:
        try:
            _copy_announced(engine, small, room)
        finally:
            engine._release(room)
    else:  # not enough room for all: each file is admitted (or refused) on its own
        single[:0] = [req for req, _ in small]
    for req in single:
        if engine.stopped.is_set():
            return
        engine._preserve_at(req)


def _copy_announced(
    engine: CopyEngine, small: list[tuple[CopyRequest, os.stat_result]], room: int
) -> None:
    rels = [engine._claim(req.rel) for req, _ in small]
    engine.writer.announce(rels)
    batch = Batch(engine.writer, room)
    try:
        with contextlib.ExitStack() as held:
            out = _native_dir(held, engine.writer, rels)
            for (req, before), rel in zip(small, rels, strict=True):
                if engine.stopped.is_set():
                    break
                stored = req.stored_as(rel)
                try:
                    if out is None or not engine._copy_native(stored, before, batch, out):
                        engine._open_and_copy(stored, before, batch)
                except FileExistsError:
                    _taken(engine, req, rel)
    finally:
        if batch.records:
            engine.journal.append_many(batch.records)
    engine.journal.seal_if_due()


def _native_dir(
    held: contextlib.ExitStack, writer: EvidenceWriter, rels: list[str]
) -> CreateDir | None:
    """The one directory the batch's names are in, held open for the C copy; None (each
    file then takes the Python path, which journals what goes wrong) where the C copy
    was not built, the names span directories, or the directory cannot be made."""
    parents = {rel.rpartition("/")[0] for rel in rels}
    if not nativecopy.AVAILABLE or len(parents) != 1:
        return None
    try:
        return held.enter_context(writer.announced_dir(parents.pop()))
    except EvidenceLostError:
        raise
    except OSError:
        return None


def _taken(engine: CopyEngine, req: CopyRequest, rel: str) -> None:
    """Someone else created a file under a name this batch announced, between the
    announcement and the copy (another process writing into the evidence directory): it
    is not this copy, and ``verify`` names it unexpected. Said, and the source copied
    on its own under the next free name, so that nothing is lost."""
    engine.record_error(
        req.collector,
        req.source,
        f"the evidence directory already held {rel}, which this run had announced but not "
        "yet written (another process wrote into the evidence directory): that file is not "
        "this copy; the source is copied under another name",
    )
    engine._preserve_at(req)
