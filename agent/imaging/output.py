"""Image formats behind one small protocol, ``ImageOutput``, and the stored files they
make (``StoredPart``): each one an artifact of the evidence directory, written through
the evidence writer (a partial name first, renamed once journaled), so the same code
stores on the kit's drive and streams to an SFTP server.

``raw`` writes ``image.raw``, or ``image.raw.000``, ``.001``, ... of ``part_size`` bytes
each with ``--split`` and, on a drive that holds no file of 4 GiB (FAT32), on its own:
``cat image.raw.* | sha256sum`` is the image's SHA-256. ``e01`` (Expert Witness Format)
comes from ``agent.imaging.ewf`` when it is there."""

from __future__ import annotations

import errno
import hashlib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from manifests.digest import CHUNK
from manifests.errors import EvidenceLostError, UsageError
from manifests.fstype import FileSystem

if TYPE_CHECKING:
    from collectors.generated import GeneratedStore
    from manifests.sink import SinkFile

FORMATS = ("raw", "e01")
DIRECTORY = "artifacts/image"
COLLECTOR = "image"


class ImageOutput(Protocol):
    """What the imaging pipeline writes to. ``name`` is the image's name in the journal
    (``artifacts/image/image.raw``); ``part_size`` the image bytes each stored file holds
    (None: one file, or a format whose files do not hold the bytes as they are);
    ``stores_raw`` whether the stored files are the image's bytes as they are (then
    ``verify`` checks each piece against them)."""

    name: str
    format: str
    part_size: int | None
    stores_raw: bool

    def write(self, data: memoryview) -> None:
        """The next bytes of the image, in order."""

    def part_at(self, offset: int) -> tuple[str, int] | None:
        """The stored file holding image byte ``offset`` and where in it (raw only)."""

    def flush(self) -> None:
        """Every byte written so far onto stable storage (before a seal covers it)."""

    def close(self, sha256: str) -> None:
        """Finish and journal every stored file; ``sha256`` is the whole image's."""

    def abort(self) -> None:
        """Give up the file being written (the drive failed); finished ones stay."""

    @property
    def artifacts(self) -> list[str]:
        """The stored paths journaled so far, in order."""


@dataclass(frozen=True)
class OutputSpec:
    """What a format needs to know before the first byte."""

    format: str
    size: int  # bytes to image
    sector: int
    split: int | None  # --split, or None
    file_system: FileSystem
    piece_size: int
    metadata: dict[str, Any]  # case, examiner, note, device description (E01 headers)


class StoredPart:
    """One stored file of an image: written as it comes, journaled as an artifact when
    ``finish`` is called. Hashes what it writes unless the caller gives the digest."""

    def __init__(self, engine: GeneratedStore, rel: str, hashed: bool = True) -> None:
        self.engine = engine
        self.rel = engine.names.claim(rel)
        self.size = 0
        self._hash = hashlib.sha256() if hashed else None
        self._file: SinkFile | None = engine.writer.create_file(self.rel)

    def write(self, data: memoryview | bytes) -> None:
        assert self._file is not None
        # In slices: a remote sink keeps a copy of every write in flight, so its memory is
        # bounded by the slice, not by the pipeline's 4 MiB chunks.
        for start in range(0, len(data), CHUNK):
            self._file.write(data[start : start + CHUNK])
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)

    def fsync(self) -> None:
        if self._file is not None:
            self._file.fsync()

    def finish(self, sha256: str | None = None, **fields: Any) -> dict[str, Any]:
        assert self._file is not None
        digest = sha256 or (self._hash.hexdigest() if self._hash else "")
        self._file.finish(self.size)
        self._file.close()
        self._file = None
        self.engine.counters.add(stored=1, bytes=self.size)
        record = self.engine.journal.append(
            "artifact",
            collector=COLLECTOR,
            path=self.rel,
            size=self.size,
            sha256=digest,
            **fields,
        )
        self.engine.writer.commit(self.rel)
        return record

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.engine._discard(self.rel)


def fat_part_size(file_system: FileSystem, piece_size: int) -> int | None:
    """The largest part a drive holds, a whole number of pieces (FAT32: 4 GiB less one
    64 MiB piece); None where files may be of any size."""
    limit = file_system.max_file_size
    if limit is None:
        return None
    return limit // piece_size * piece_size or limit


class RawOutput:
    """``image.raw``, or numbered parts of it."""

    format = "raw"
    stores_raw = True

    def __init__(self, engine: GeneratedStore, spec: OutputSpec) -> None:
        self.engine = engine
        self.name = f"{DIRECTORY}/image.raw"
        limit = fat_part_size(spec.file_system, spec.piece_size)
        split = spec.split
        too_big = spec.size > (spec.file_system.max_file_size or spec.size)
        if limit is not None and too_big and (split is None or split > limit):
            split = limit  # FAT32: split on its own, under 4 GiB a part
        self.part_size = split if split and split < spec.size else None
        self._parts: list[str] = []
        self._current: StoredPart | None = None
        self._offset = 0  # image bytes written

    def _part_name(self, number: int) -> str:
        return f"{self.name}.{number:03d}" if self.part_size else self.name

    def part_at(self, offset: int) -> tuple[str, int] | None:
        if not self.part_size:
            return self.name, offset
        number, within = divmod(offset, self.part_size)
        return self._part_name(number), within

    def write(self, data: memoryview) -> None:
        pos = 0
        while pos < len(data):
            if self._current is None:
                number = self._offset // self.part_size if self.part_size else 0
                # One file: its hash is the image's, given at close; parts hash themselves.
                self._current = StoredPart(
                    self.engine, self._part_name(number), hashed=bool(self.part_size)
                )
            room = self.part_size - self._current.size if self.part_size else len(data) - pos
            take = min(room, len(data) - pos)
            self._current.write(data[pos : pos + take])
            pos += take
            self._offset += take
            if self.part_size and self._current.size == self.part_size:
                self._finish_part(None)

    def _finish_part(self, sha256: str | None) -> None:
        assert self._current is not None
        part = self._current
        self._current = None
        number = len(self._parts)
        offset = number * self.part_size if self.part_size else 0
        record = part.finish(sha256, kind="image-part", image=self.name, part=number, offset=offset)
        self._parts.append(record["path"])

    def close(self, sha256: str) -> None:
        if self._current is not None:
            self._finish_part(None if self.part_size else sha256)
        elif not self._parts:  # an empty source still gets its (empty) image file
            self._current = StoredPart(self.engine, self._part_name(0), hashed=True)
            self._finish_part(None)

    def flush(self) -> None:
        if self._current is not None:
            self._current.fsync()

    def abort(self) -> None:
        if self._current is not None:
            self._current.abort()
            self._current = None

    @property
    def artifacts(self) -> list[str]:
        return list(self._parts)


def open_output(engine: GeneratedStore, spec: OutputSpec) -> ImageOutput:
    if spec.format == "raw":
        return RawOutput(engine, spec)
    if spec.format == "e01":
        return _ewf(engine, spec)
    raise UsageError(f"unknown image format {spec.format!r}; use raw or e01")


def _ewf_module() -> Any:
    """``agent.imaging.ewf`` (the E01 writer), if this build has it."""
    return importlib.import_module(".ewf", __package__)


def check_format(name: str) -> None:
    """Refuse, before anything is collected, a format this build cannot write."""
    if name == "e01":
        try:
            _ewf_module()
        except ImportError as e:
            raise UsageError(
                "--format e01 is not available in this version yet",
                hint="use --format raw (check it with sha256sum; convert with ewfacquire later)",
            ) from e


def _ewf(engine: GeneratedStore, spec: OutputSpec) -> ImageOutput:
    check_format("e01")
    output: ImageOutput = _ewf_module().open_output(engine, spec)
    return output


def is_out_of_space(error: BaseException) -> bool:
    return (
        isinstance(error, OSError)
        and not isinstance(error, EvidenceLostError)
        and (error.errno == errno.ENOSPC)
    )
