"""``--format e01``: the E01 writer (``ewf.py``) behind the imaging pipeline's
``ImageOutput``.

Each segment file is one artifact (``artifacts/image/image.E01``, ``.E02``, ...),
written through the evidence writer under its partial name, hashed (SHA-256) as it is
written and journaled once complete, so ``verify`` checks it like any file and an SFTP
destination gets it streamed. The image's MD5 and SHA-1 (what the E01 stores) go in an
``image-e01`` record, next to the SHA-256 of the whole image in ``image-end``."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from .. import __version__
from .ewf import DEFAULT_SEGMENT_SIZE, EwfWriter
from .ewf_sections import CaseMetadata
from .output import COLLECTOR, DIRECTORY, OutputSpec, StoredPart

if TYPE_CHECKING:
    from collectors.generated import GeneratedStore

FAT_MARGIN = 64 * 1024 * 1024  # under the drive's file size limit by more than a group


def case_metadata(metadata: dict[str, Any], when: float | None = None) -> CaseMetadata:
    """The E01 header values from what the command line and the device gave."""
    device = metadata.get("device") or {}
    path = str(device.get("path", ""))
    described = " ".join(str(device[k]) for k in ("vendor", "model") if device.get(k))
    return CaseMetadata(
        case_number=str(metadata.get("case") or ""),
        evidence_number=path,
        description=f"{path} ({described}), imaged by preserve"
        if described
        else f"{path}, imaged by preserve",
        examiner=str(metadata.get("examiner") or ""),
        notes=str(metadata.get("note") or ""),
        model=str(device.get("model") or ""),
        serial=str(device.get("serial") or ""),
        software_version=__version__[:11],  # EnCase shows 11 characters; the tool is named above
        operating_system=f"{platform.system()} {platform.release()}"[:23],
        acquired=when,
    )


def segment_size(spec: OutputSpec) -> int:
    """``--split``, or the default; never over what the output drive holds in a file."""
    size = spec.split or DEFAULT_SEGMENT_SIZE
    limit = spec.file_system.max_file_size
    if limit is not None:
        size = min(size, limit - FAT_MARGIN)
    return size


class _Segment:
    """One segment file as an artifact: journaled when the writer closes it complete;
    kept and journaled as incomplete when the run stopped; removed if the drive failed."""

    def __init__(self, output: EwfOutput, rel: str, number: int) -> None:
        self.output = output
        self.number = number
        self.part = StoredPart(output.engine, rel)

    def write(self, data: bytes) -> None:
        self.part.write(data)

    def close(self) -> None:
        if self.output.failed:
            self.part.abort()
            return
        fields: dict[str, Any] = {"kind": "image-segment", "image": self.output.name}
        if self.output.stopping:
            fields["incomplete"] = True
        record = self.part.finish(None, segment=self.number, **fields)
        self.output.segments.append(record["path"])


class EwfOutput:
    """``image.E01`` and the segment files after it."""

    format = "e01"
    stores_raw = False  # the stored files are not the image's bytes as they are
    part_size: int | None = None

    def __init__(self, engine: GeneratedStore, spec: OutputSpec) -> None:
        self.engine = engine
        self.name = f"{DIRECTORY}/image.E01"
        self.segments: list[str] = []
        self.stopping = False
        self.failed = False
        self._size = spec.size
        self._current: _Segment | None = None
        device = spec.metadata.get("device") or {}
        self.writer = EwfWriter(
            self._open_segment,
            spec.size,
            case_metadata(spec.metadata),
            sector_size=spec.sector,
            segment_size=segment_size(spec),
            removable=str(device.get("removable", "0")) == "1",
            physical="partition" not in device,
        )

    def _open_segment(self, name: str) -> _Segment:
        self._current = _Segment(self, f"{DIRECTORY}/{name}", len(self.segments) + 1)
        return self._current

    def write(self, data: memoryview) -> None:
        self.writer.write(data)

    def note_bad_range(self, offset: int, length: int) -> None:
        """A range stored as zeros: it goes in the error2 section too."""
        self.writer.add_bad_range(offset, length)

    def part_at(self, offset: int) -> tuple[str, int] | None:
        return None  # chunks are compressed: no image byte sits at a fixed place

    def flush(self) -> None:
        """What the writer has written so far onto stable storage. Chunks it still holds
        (4 MiB at most) are not in a file yet; nothing of an E01 is checked by piece."""
        if self._current is not None:
            self._current.part.fsync()

    def close(self, sha256: str) -> None:
        if self.writer.received != self._size:  # stopped early: keep what was read
            self.stopping = True
            self.writer.abort(flush=True)
            return
        result = self.writer.close()
        self.engine.journal.append(
            "image-e01",
            collector=COLLECTOR,
            image=self.name,
            md5=result.md5,
            sha1=result.sha1,
            sha256=sha256,
            segments=self.segments,
            media_size=result.media_size,
            padding=result.padding,
            chunks=result.chunks,
            set_identifier=result.set_identifier,
            bad_sectors=[list(r) for r in result.bad_sectors],
        )

    def abort(self) -> None:
        self.failed = True
        self.writer.abort()

    @property
    def artifacts(self) -> list[str]:
        return list(self.segments)
