"""The image as a stage of a run: ``preserve image DEVICE`` runs it alone, ``preserve
--image DEVICE`` after volatile state and logs (it is the slowest, and the least
volatile).

The journal tells the acquisition's whole story: ``image-start`` (the device as the
kernel describes it, its partition table, mounts, format, piece size), an
``image-bad-range`` for every range that could not be read (zeros stored instead), an
``image-piece`` for every piece as it completes (sealed every few seconds), an
``artifact`` for every stored file, and ``image-end`` with the SHA-256 of the whole
image, how much of the device it covers and why it stopped if it did not finish."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from collectors.base import Collector, Stage
from collectors.context import CollectContext
from manifests.errors import EvidenceLostError
from manifests.journal import journal_safe

from ..console import human_bytes, plural
from . import pipeline
from .device import Source
from .output import COLLECTOR, ImageOutput, OutputSpec, is_out_of_space, open_output
from .partitions import read_table
from .pieces import DEFAULT_PIECE, Piece, PieceHasher
from .reader import BadRange, Reader, SourceGoneError

LIVE_WARNING = (
    "{path} is mounted read-write ({where}): the image of a live file system is not a "
    "consistent snapshot (files change while it is read); unmount it or image a snapshot "
    "if you can, and treat this image as a best effort"
)


@dataclass(frozen=True)
class ImageRequest:
    """What the command line asked for, the source already opened (and refused there,
    before anything was collected, if it could not be)."""

    source: Source
    format: str = "raw"
    split: int | None = None
    piece_size: int = DEFAULT_PIECE
    metadata: tuple[tuple[str, str], ...] = ()


def live_warning(source: Source) -> str | None:
    mounts = source.mounted_rw
    if not mounts:
        return None
    where = ", ".join(f"{m['source']} on {m['mount_point']}" for m in mounts)
    return LIVE_WARNING.format(path=source.path, where=where)


class ImageCollector(Collector):
    name: ClassVar[str] = COLLECTOR
    stage: ClassVar[Stage] = Stage.IMAGE
    description: ClassVar[str] = "a forensic image of a disk, partition or disk image file"
    default: ClassVar[bool] = False

    def __init__(self, request: ImageRequest) -> None:
        self.request = request

    @property
    def image_bytes(self) -> int:
        """What the pre-flight counts: the device is read, and stored, whole."""
        return self.request.source.size

    def sources(self) -> list[bytes]:
        return []  # a device, not a tree: an output on it is the user's choice

    def collect(self, ctx: CollectContext) -> None:
        try:
            Acquisition(ctx, self.request).run()
        finally:
            self.request.source.close()


class Acquisition:
    """One image, start to end record."""

    def __init__(self, ctx: CollectContext, request: ImageRequest) -> None:
        self.ctx = ctx
        self.engine = ctx.engine
        self.request = request
        self.source = request.source
        self.bad: list[BadRange] = []
        self.bad_bytes = 0
        self.stop_reason: str | None = None
        self.output: ImageOutput | None = None
        self.pieces: PieceHasher | None = None
        self.tally = self.engine.read.slot()

    def run(self) -> None:
        source, journal = self.source, self.ctx.journal
        spec = OutputSpec(
            format=self.request.format,
            size=source.size,
            sector=source.logical_sector,
            split=self.request.split,
            file_system=self.engine.writer.file_system,
            piece_size=self.request.piece_size,
            metadata={**dict(self.request.metadata), "device": source.to_json()},
        )
        table = read_table(source.fd, source.logical_sector)
        reader = Reader(source)  # O_DIRECT from here on: the table is read before
        output = self.output = open_output(self.engine, spec)
        warning = live_warning(source)
        journal.append(
            "image-start",
            collector=COLLECTOR,
            image=output.name,
            format=output.format,
            # From the disk itself: a hostile table's numbers must not break the journal.
            source=journal_safe(source.to_json()),
            partition_table=journal_safe(table),
            piece_size=self.request.piece_size,
            part_size=output.part_size,
            chunk_size=pipeline.CHUNK,
            direct_io=reader.direct,
            live=bool(warning),
            **({"warning": warning} if warning else {}),
        )
        if warning:
            self.ctx.summary.add("IMAGE OF A LIVE FILE SYSTEM", warning)
        self.pieces = PieceHasher(self.request.piece_size, output.part_size)
        began = time.monotonic_ns()
        outcome = pipeline.run(reader, source.size, self._consume, self._should_stop)
        aborted = outcome.failure is not None and self._failed(outcome.failure)
        if not aborted:  # what was read is stored: its last, shorter piece, and the files
            last = self.pieces.finish()
            if last is not None:
                self._journal_piece(last)
            output.close(outcome.sha256)
        self._end(outcome, aborted, time.monotonic_ns() - began)

    # -- in the pipeline ---------------------------------------------------------------

    def _should_stop(self) -> bool:
        if self.engine.stopped.is_set():
            self.stop_reason = "stopped by a signal"
            return True
        free = self.engine.writer.free_bytes()
        if free is not None and free < self.engine._reserve() + 2 * pipeline.CHUNK:
            self.stop_reason = "the output drive is full"
            self.engine.full.set()
            return True
        return False

    def _consume(self, chunk: pipeline.Chunk) -> None:
        assert self.output is not None and self.pieces is not None
        view = chunk.view
        done = self.pieces.feed(view)
        self.output.write(view)  # before the pieces are journaled: a seal covers written bytes
        for bad in chunk.bad:
            self._journal_bad(bad)
        for piece in done:
            self._journal_piece(piece)
        self.tally[0] += chunk.length
        self.ctx.journal.seal_if_due(before=self.output.flush)

    def _journal_piece(self, piece: Piece) -> None:
        assert self.output is not None
        where = self.output.part_at(piece.offset) if self.output.stores_raw else None
        placed = {"part": where[0], "part_offset": where[1]} if where else {}
        fields = {"index": piece.number, "length": piece.length, "sha256": piece.sha256}
        self.ctx.journal.append(
            "image-piece", image=self.output.name, offset=piece.offset, **fields, **placed
        )

    def _journal_bad(self, bad: BadRange) -> None:
        assert self.output is not None
        self.bad.append(bad)
        self.bad_bytes += bad.length
        note = getattr(self.output, "note_bad_range", None)  # E01: its error2 section
        if note is not None:
            note(bad.offset, bad.length)
        fields = {"length": bad.length, "errno": bad.errno, "error": bad.error}
        self.ctx.journal.append(
            "image-bad-range", image=self.output.name, offset=bad.offset, **fields
        )

    # -- the end -------------------------------------------------------------------------

    def _failed(self, failure: BaseException) -> bool:
        """Why the image ended early; True when the file being written was given up."""
        assert self.output is not None
        if isinstance(failure, SourceGoneError):  # what was read is still good
            self.stop_reason = f"the device stopped answering ({failure.strerror})"
            return False
        if isinstance(failure, EvidenceLostError) or not isinstance(failure, OSError):
            raise failure  # the directory is gone (the run abandons it), or a bug
        self.output.abort()
        if is_out_of_space(failure):
            self.engine.full.set()
            self.stop_reason = "the output drive is full"
        else:
            self.stop_reason = f"writing the image failed: {failure.strerror}"
        return True

    def _end(self, outcome: pipeline.Outcome, aborted: bool, took_ns: int) -> None:
        """The closing record; after a given-up file the hash of what was read is not that
        of what is stored, so only the finished files (and their pieces) stand."""
        assert self.output is not None
        size, done = self.source.size, outcome.done
        complete = done == size and self.stop_reason is None
        sha256 = None if aborted else outcome.sha256
        self.ctx.journal.append(
            "image-end",
            collector=COLLECTOR,
            image=self.output.name,
            format=self.output.format,
            complete=complete,
            size=done,
            device_size=size,
            sha256=sha256,
            artifacts=self.output.artifacts,
            pieces=self.pieces.number if self.pieces else 0,
            bad_ranges=len(self.bad),
            bad_bytes=self.bad_bytes,
            duration_ns=str(took_ns),
            **({"stopped": self.stop_reason} if self.stop_reason else {}),
        )
        summary = self.ctx.summary
        files = plural(len(self.output.artifacts), "file")
        state = "complete" if complete else f"INCOMPLETE ({self.stop_reason})"
        summary.add(
            "Image",
            f"{self.output.name} ({files}), {human_bytes(done)} of {human_bytes(size)}, {state}",
        )
        summary.add("Image SHA-256", sha256 or "none: the file being written was given up")
        if self.bad:
            text = (
                f"{plural(len(self.bad), 'range')}, {human_bytes(self.bad_bytes)} could not be "
                "read and are zeros in the image (each an 'image-bad-range' record)"
            )
            summary.add("Unreadable sectors", text)
            self.engine.record_error(COLLECTOR, self.source.path.encode(), f"unreadable: {text}")
        if not complete and self.stop_reason:
            self.engine.record_error(
                COLLECTOR,
                self.source.path.encode(),
                f"image stopped after {done} of {size} bytes: {self.stop_reason}",
            )
