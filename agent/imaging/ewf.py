"""A streaming Expert Witness Format (EWF-E01) writer: image bytes in, ``.E01``,
``.E02``, ... segment files out, each written strictly front to back.

Why written here rather than through libewf: the ``libewf-python`` wheel is built without
zlib and refuses to write, and the evidence writer's files (``EvidenceWriter.create_file``)
are sequential streams that may go to an SFTP drop-box, where nothing can be patched
afterwards. So every field is known before its section is written: the media size comes
first (a device's size is read before imaging), and the chunks of one ``sectors``
section are held until the section is complete (a bounded group, 4 MiB by default), then
written with their ``table`` and ``table2``. Many small groups per segment file are what
the format allows for images of more than 16,375 chunks, and what libewf reads.

What the image holds, and what ``ewfverify`` checks: the case metadata (header2, header),
the geometry (volume), each 32 KiB chunk zlib-compressed (or stored with its Adler-32
when compression would not make it smaller), MD5 (hash) and MD5 + SHA-1 (digest) of the
media, and the ranges that could not be read (error2). EWF1 has no place for SHA-256:
that hash belongs to the journal."""

from __future__ import annotations

import hashlib
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from manifests.errors import OutputError

from . import ewf_sections as s
from .ewf_sections import CaseMetadata
from .ewf_settings import (
    COMPRESSION,
    DEFAULT_SEGMENT_SIZE,
    VOLUME_LEVEL,
    EwfSettingsError,
    check_settings,
)

if TYPE_CHECKING:
    from collectors.generated import GeneratedStore

    from .output import ImageOutput, OutputSpec

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "CaseMetadata",
    "EwfError",
    "EwfResult",
    "EwfSettingsError",
    "EwfWriter",
]

GROUP_BYTES = 4 * 1024 * 1024  # stored chunk bytes held before a sectors section is written
WRITE_BATCH = 32  # stored chunks joined into one write (1 MiB of incompressible ones)
GROUP_CHUNKS = 16375  # entries a table holds in every reader (FTK 1 and EnCase 5 too)
ERROR2_ROOM = 1024  # bad ranges always kept room for in a segment file (8 KiB)


class EwfError(OutputError):
    """The bytes handed to the writer do not make the image it announced."""


class SegmentFile(Protocol):
    """Where one segment file goes: written in order, closed once complete."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


@dataclass
class EwfResult:
    """What ``close`` returns: the hashes stored in the image and its segment files."""

    md5: str
    sha1: str
    segments: list[str]
    media_size: int  # the source's size, padded to a whole sector
    padding: int  # zero bytes added after the source's last byte (a partial sector)
    chunks: int
    stored_bytes: int  # total size of the segment files
    set_identifier: str = ""  # the GUID in every segment file's volume or data section
    bad_sectors: list[tuple[int, int]] = field(default_factory=list)


class EwfWriter:
    """Writes one E01 image of ``media_size`` bytes through ``open_segment(name)``.

    ``write`` the media bytes in order (any sizes), announce unreadable ranges with
    ``add_bad_range`` (room is kept for 1,024 of them in every segment file; more are
    best announced before their zeros are written), then ``close``. ``abort`` closes the
    open segment file without the closing sections (a stopped run)."""

    def __init__(
        self,
        open_segment: Callable[[str], SegmentFile],
        media_size: int,
        meta: CaseMetadata,
        *,
        basename: str = "image",
        sector_size: int = 512,
        sectors_per_chunk: int = 64,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        compression: str = "fast",
        removable: bool = False,
        physical: bool = True,
        workers: int = 2,
    ) -> None:
        check_settings(media_size, sector_size, sectors_per_chunk, segment_size, compression)
        self._open = open_segment
        self._basename = basename
        self._sector = sector_size
        self._chunk = sector_size * sectors_per_chunk
        self._segment_size = segment_size
        self._source_size = media_size
        self._padding = -media_size % sector_size
        size = media_size + self._padding
        self._level = COMPRESSION[compression]
        self._empty_only = compression == "empty-block"
        self._geometry = s.Geometry(
            chunk_count=-(-size // self._chunk),
            sectors_per_chunk=sectors_per_chunk,
            sector_size=sector_size,
            sector_count=size // sector_size,
            media_type=s.MEDIA_REMOVABLE if removable else s.MEDIA_FIXED,
            media_flags=s.FLAG_IMAGE | (s.FLAG_PHYSICAL if physical else 0),
            compression_level=VOLUME_LEVEL.get(compression, s.LEVEL_BEST),
            set_identifier=uuid.uuid4().bytes_le,
        )
        self._meta = meta
        self._started = time.time()
        # What the format stores, not what anything here trusts (that is SHA-256).
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._received = 0
        self._pending = bytearray()
        self._zero = bytes(self._chunk)
        self._zero_stored = self._compress(self._zero)
        self._group: list[tuple[bytes, bool]] = []
        self._group_bytes = 0
        self._ranges: list[tuple[int, int]] = []
        self._segment: SegmentFile | None = None
        self._number = 0
        self._offset = 0
        self._first_offset = 0  # where the first chunk of the open segment file goes
        self._names: list[str] = []
        self._stored = 0
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self._ensure_segment()  # a name that cannot be created fails before any read

    @property
    def received(self) -> int:
        """Media bytes written so far."""
        return self._received

    # -- input ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Media bytes, in order; hashed, cut into chunks, compressed and stored."""
        if self._received + len(data) > self._source_size:
            raise EwfError(
                f"the E01 was opened for {self._source_size} bytes and got more",
                hint="the device grew while it was imaged; image it again",
            )
        self._received += len(data)
        view, size = memoryview(data), self._chunk
        if self._pending:  # complete the chunk begun by the last write
            take = size - len(self._pending)
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < size:
                return
            self._store([bytes(self._pending)])
            self._pending.clear()
        whole = len(view) // size * size
        if whole:  # one copy, chunk by chunk, straight from the caller's buffer
            self._store([bytes(view[i : i + size]) for i in range(0, whole, size)])
        self._pending += view[whole:]

    def add_bad_range(self, offset: int, length: int) -> None:
        """Bytes ``offset``..``offset+length`` could not be read (stored as zeros): they
        go in the error2 section, in sectors, merged with the range before when they
        touch. Ranges past the 32-bit sector numbers of error2 (2 TiB of 512-byte
        sectors) are left to the journal."""
        first = offset // self._sector
        end = -(-(offset + length) // self._sector)
        if first > 0xFFFFFFFF or end <= first:
            return
        end = min(end, 0xFFFFFFFF)
        if self._ranges and self._ranges[-1][0] + self._ranges[-1][1] >= first:
            start, count = self._ranges[-1]
            self._ranges[-1] = (start, max(count, end - start))
        else:
            self._ranges.append((first, end - first))

    def close(self) -> EwfResult:
        """Write what is left and the closing sections; returns the image's hashes."""
        if self._received != self._source_size:
            self.abort(flush=True)
            raise EwfError(
                f"the E01 was opened for {self._source_size} bytes and got "
                f"{self._received}; the image is incomplete",
                hint="the source shrank or a read stopped early; image it again",
            )
        self._pending += bytes(self._padding)
        self._store_pending()
        self._flush_group()
        self._ensure_segment()
        md5, sha1 = self._md5.digest(), self._sha1.digest()
        tail = bytearray()
        if self._number == 1:
            tail += s.section("data", self._offset, s.volume_body(self._geometry))
        if self._ranges:
            tail += s.section("error2", self._offset + len(tail), s.error2_body(self._ranges))
        tail += s.section("digest", self._offset + len(tail), s.digest_body(md5, sha1))
        tail += s.section("hash", self._offset + len(tail), s.hash_body(md5))
        tail += s.descriptor("done", self._offset + len(tail), 0)
        self._emit(bytes(tail))
        self._close_segment()
        self._shutdown()
        return EwfResult(
            md5=md5.hex(),
            sha1=sha1.hex(),
            segments=list(self._names),
            media_size=self._source_size + self._padding,
            padding=self._padding,
            chunks=self._geometry.chunk_count,
            stored_bytes=self._stored,
            set_identifier=str(uuid.UUID(bytes_le=self._geometry.set_identifier)),
            bad_sectors=list(self._ranges),
        )

    def abort(self, flush: bool = False) -> None:
        """Stop: the open segment file is closed without the closing sections (not a
        readable image, but evidence of what was read). ``flush`` first writes the chunks
        held back, with their tables (a stopped run, as opposed to a failed drive)."""
        try:
            if flush and self._segment is not None:
                self._store_pending()  # the short chunk too: every byte read
                self._flush_group()
        finally:
            self._close_segment()
            self._shutdown()

    # -- chunks --------------------------------------------------------------------

    def _store_pending(self) -> None:
        """The last, short chunk (the end, or a stopped run)."""
        if self._pending:
            self._store([bytes(self._pending)])
            self._pending.clear()

    def _store(self, chunks: list[bytes]) -> None:
        """Hash and encode chunks, in order: zlib on the worker threads while this one
        runs MD5 and SHA-1 (both let go of the GIL)."""
        if self._pool is not None and len(chunks) > 1:
            futures = [self._pool.submit(self._encode, c) for c in chunks]
            self._hash(chunks)
            stored = [f.result() for f in futures]
        else:
            self._hash(chunks)
            stored = [self._encode(c) for c in chunks]
        for item in stored:
            self._add_chunk(item)

    def _hash(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._md5.update(chunk)
            self._sha1.update(chunk)

    def _encode(self, chunk: bytes) -> tuple[bytes, bool]:
        """A chunk as stored; a chunk of zeros (most of a fresh disk) from a cache."""
        if chunk == self._zero:
            return self._zero_stored
        return self._compress(chunk)

    def _compress(self, chunk: bytes) -> tuple[bytes, bool]:
        """zlib data, or (where that is not smaller, or compression is off) the bytes
        followed by their Adler-32, as libewf stores a chunk."""
        level = self._level
        if level is not None and (not self._empty_only or _uniform(chunk)):
            packed = zlib.compress(chunk, level)
            if len(packed) < len(chunk):
                return packed, True
        return chunk + s.adler(chunk), False

    def _add_chunk(self, item: tuple[bytes, bool]) -> None:
        """Place one stored chunk: in the open group if it and its table entries still
        fit in this segment file with the closing sections, else in the next file."""
        self._ensure_segment()
        count = len(self._group) + 1
        need = s.DESCRIPTOR_SIZE + self._group_bytes + len(item[0]) + 2 * s.table_size(count)
        reserve = s.TAIL_SIZE + s.error2_size(max(len(self._ranges), ERROR2_ROOM))
        if self._offset + need + reserve > self._segment_size and self._chunks_in_segment():
            self._flush_group()
            self._emit(s.descriptor("next", self._offset, 0))
            self._close_segment()
            self._ensure_segment()
        self._group.append(item)
        self._group_bytes += len(item[0])
        if self._group_bytes >= GROUP_BYTES or len(self._group) >= GROUP_CHUNKS:
            self._flush_group()

    def _chunks_in_segment(self) -> bool:
        return bool(self._group) or self._offset > self._first_offset

    def _flush_group(self) -> None:
        """The held chunks as one ``sectors`` section, then ``table`` and ``table2``
        with their offsets (relative to the sectors section: the table's base)."""
        if not self._group:
            return
        base = self._offset
        entries, position = [], s.DESCRIPTOR_SIZE
        for stored, compressed in self._group:
            entries.append(position | (s.COMPRESSED if compressed else 0))
            position += len(stored)
        batch = [s.descriptor("sectors", base, position)]
        for stored, _ in self._group:  # written a megabyte at a time, not copied whole
            batch.append(stored)
            if len(batch) >= WRITE_BATCH:
                self._emit(b"".join(batch))
                batch.clear()
        body = s.table_body(entries, base)
        table = s.section("table", base + position, body)
        batch += [table, s.section("table2", base + position + len(table), body)]
        self._group, self._group_bytes = [], 0
        self._emit(b"".join(batch))

    # -- segment files -------------------------------------------------------------

    def _ensure_segment(self) -> None:
        """Open the next segment file if none is open: its file header, then the case
        metadata and volume (the first file) or a data section (the others)."""
        if self._segment is not None:
            return
        self._number += 1
        name = f"{self._basename}.{s.segment_extension(self._number)}"
        self._segment = self._open(name)
        self._names.append(name)
        self._offset = 0
        start = s.file_header(self._number)
        if self._number == 1:
            start += s.header_sections(self._meta, len(start), self._started)
            start += s.section("volume", len(start), s.volume_body(self._geometry))
        else:
            start += s.section("data", len(start), s.volume_body(self._geometry))
        self._emit(start)
        self._first_offset = self._offset

    def _emit(self, data: bytes) -> None:
        assert self._segment is not None
        self._segment.write(data)
        self._offset += len(data)
        self._stored += len(data)

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.close()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _uniform(chunk: bytes) -> bool:
    """Is every byte the same (libewf's "empty block")?"""
    return chunk.count(chunk[:1]) == len(chunk)


def open_output(engine: GeneratedStore, spec: OutputSpec) -> ImageOutput:
    """``--format e01`` for the imaging stage (``agent.imaging.output.open_output``)."""
    from .ewf_output import EwfOutput

    return EwfOutput(engine, spec)
