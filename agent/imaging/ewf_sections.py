"""The bytes of EWF-E01 sections, built whole before they are written.

Layout from libyal's "Expert Witness Compression Format (EWF)" specification, in the
EnCase 6 flavour that ``ewfacquire -f encase6`` writes and every E01 reader accepts:
little-endian fields, a 76-byte section descriptor before each section, Adler-32 over
every descriptor and fixed-size section body. Each function returns complete bytes, so the
writer (``ewf.py``) only ever appends: nothing here needs a seek back, which an SFTP
drop-box or a FAT32 stick written strictly in order could not give."""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

SIGNATURE = b"EVF\x09\x0d\x0a\xff\x00"
DESCRIPTOR_SIZE = 76
VOLUME_SIZE = 1052  # the volume and data sections' body (EnCase 5 and later)
TABLE_HEADER_SIZE = 24
ERROR2_HEADER_SIZE = 520
COMPRESSED = 0x80000000  # the table entry's most significant bit
MAX_SEGMENTS = 99 + 22 * 26 * 26  # E01..E99, EAA..ZZZ

# Volume section values (specification: "Media type", "Media flags", "Compression level").
MEDIA_REMOVABLE, MEDIA_FIXED = 0x00, 0x01
FLAG_IMAGE, FLAG_PHYSICAL = 0x01, 0x02
LEVEL_NONE, LEVEL_FAST, LEVEL_BEST = 0, 1, 2


def adler(data: bytes | bytearray | memoryview) -> bytes:
    """The format's checksum: Adler-32 (zlib's), stored little-endian."""
    return struct.pack("<I", zlib.adler32(data))


def file_header(segment_number: int) -> bytes:
    """The 13 bytes that open every segment file."""
    return SIGNATURE + struct.pack("<BHH", 1, segment_number, 0)


def descriptor(kind: str, offset: int, size: int) -> bytes:
    """A section descriptor at ``offset`` in its segment file, its section ``size`` bytes
    long including these 76. ``next`` and ``done`` point at themselves with size 0, as
    EnCase writes them (``size`` 0 here)."""
    following = offset + size if size else offset
    head = struct.pack("<16sQQ40x", kind.encode("ascii"), following, size)
    return head + adler(head)


def section(kind: str, offset: int, body: bytes) -> bytes:
    """A whole section: its descriptor followed by ``body``."""
    return descriptor(kind, offset, DESCRIPTOR_SIZE + len(body)) + body


def segment_extension(number: int) -> str:
    """``E01`` ... ``E99``, then ``EAA`` ... ``EZZ``, ``FAA`` ... ``ZZZ`` (the spec's
    naming, as EnCase and libewf read it)."""
    if number < 1:
        raise ValueError("segment numbers start at 1")
    if number <= 99:
        return f"E{number:02d}"
    k = number - 100
    first, rest = divmod(k, 26 * 26)
    if number > MAX_SEGMENTS:
        raise ValueError(f"an EWF image has at most {MAX_SEGMENTS} segment files")
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return chr(ord("E") + first) + letters[rest // 26] + letters[rest % 26]


@dataclass(frozen=True)
class CaseMetadata:
    """What ``ewfinfo`` shows under "Acquiry information": the case metadata of the
    header and header2 sections. Free text; tabs and line breaks become spaces, since
    they separate the format's fields."""

    case_number: str = ""
    evidence_number: str = ""
    description: str = ""
    examiner: str = ""
    notes: str = ""
    model: str = ""
    serial: str = ""
    software_version: str = ""  # EnCase shows at most 11 characters
    operating_system: str = ""
    acquired: float | None = None  # POSIX time; None: when the writer starts
    system_time: float | None = None  # the host clock as read then; None: the same


def _field(value: str) -> str:
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _header2_text(meta: CaseMetadata, acquired: int, system: int) -> str:
    """The EnCase 5-7 header2 text: the main category with the case values, then the
    sources and subjects categories with the empty rows EnCase and libewf write."""
    main = [
        ("a", meta.description),
        ("c", meta.case_number),
        ("n", meta.evidence_number),
        ("e", meta.examiner),
        ("t", meta.notes),
        ("md", meta.model),
        ("sn", meta.serial),
        ("av", meta.software_version),
        ("ov", meta.operating_system),
        ("m", str(acquired)),
        ("u", str(system)),
        ("p", "0"),
        ("dc", ""),
    ]
    lines = [
        "3",
        "main",
        "\t".join(key for key, _ in main),
        "\t".join(_field(value) for _, value in main),
        "",
        "srce",
        "0\t1",
        "p\tn\tid\tev\ttb\tlo\tpo\tah\tgu\taq",
        "0\t0",
        "\t\t\t\t\t-1\t-1\t\t\t",
        "",
        "sub",
        "0\t1",
        "p\tn\tid\tnu\tco\tgu",
        "0\t0",
        "\t\t\t\t1\t",
        "",
        "",
    ]
    return "\n".join(lines)


def _encase_date(moment: int) -> str:
    """The header section's date form, ``2002 3 4 10 19 59``, in local time as EnCase
    writes and libewf reads it."""
    t = time.localtime(moment)
    return f"{t.tm_year} {t.tm_mon} {t.tm_mday} {t.tm_hour} {t.tm_min} {t.tm_sec}"


def _header_text(meta: CaseMetadata, acquired: int, system: int) -> str:
    """The EnCase 4-7 header text (ASCII, CRLF line ends): the same case values for
    readers that know only the older section."""
    keys = ["c", "n", "a", "e", "t", "av", "ov", "m", "u", "p"]
    values = [
        meta.case_number,
        meta.evidence_number,
        meta.description,
        meta.examiner,
        meta.notes,
        meta.software_version,
        meta.operating_system,
        _encase_date(acquired),
        _encase_date(system),
        "0",
    ]
    row = "\t".join(_field(v) for v in values)
    return "\r\n".join(["1", "main", "\t".join(keys), row, "", ""])


def header_sections(meta: CaseMetadata, offset: int, acquired: float) -> bytes:
    """header2 twice (UTF-16LE with its byte order mark) then header (ASCII, anything
    else as ``?``), as EnCase 6 lays out the start of the first segment file."""
    when = int(meta.acquired if meta.acquired is not None else acquired)
    system = int(meta.system_time) if meta.system_time is not None else when
    header2 = zlib.compress(b"\xff\xfe" + _header2_text(meta, when, system).encode("utf-16-le"))
    header = zlib.compress(_header_text(meta, when, system).encode("ascii", "replace"))
    out = bytearray()
    for kind, body in (("header2", header2), ("header2", header2), ("header", header)):
        out += section(kind, offset + len(out), body)
    return bytes(out)


@dataclass(frozen=True)
class Geometry:
    """The media as the volume section describes it."""

    chunk_count: int
    sectors_per_chunk: int
    sector_size: int
    sector_count: int
    media_type: int
    media_flags: int
    compression_level: int
    set_identifier: bytes  # 16 bytes: the GUID that ties the segment files together


def volume_body(g: Geometry) -> bytes:
    """The 1052-byte body of the ``volume`` section (first segment file) and of the
    ``data`` sections (the others, and the end of a single-file image)."""
    body = struct.pack(
        "<B3xIIIQIIIB3xIIIB3xII16s",
        g.media_type,
        g.chunk_count,
        g.sectors_per_chunk,
        g.sector_size,
        g.sector_count,
        0,  # C:H:S cylinders, heads, sectors: unknown for a Linux block device
        0,
        0,
        g.media_flags,
        0,  # PALM volume start sector
        0,
        0,  # SMART logs start sector
        g.compression_level,
        g.sectors_per_chunk,  # error granularity: a bad range is recorded per chunk
        0,
        g.set_identifier,
    )
    body += bytes(VOLUME_SIZE - 4 - len(body))
    return body + adler(body)


def table_body(entries: list[int], base: int) -> bytes:
    """A ``table`` (or its mirror ``table2``) body: the entry count and the base offset
    that the 31-bit chunk offsets are relative to (EnCase 6), the entries, and the
    checksum of the entries."""
    header = struct.pack("<I4xQ4x", len(entries), base)
    array = struct.pack(f"<{len(entries)}I", *entries)
    return header + adler(header) + array + adler(array)


def table_size(entries: int) -> int:
    """Bytes of one table section (descriptor included) holding ``entries`` chunks."""
    return DESCRIPTOR_SIZE + TABLE_HEADER_SIZE + 4 * entries + 4


def error2_body(ranges: list[tuple[int, int]]) -> bytes:
    """The ``error2`` body: (first sector, sector count) of every range that could not
    be read and was stored as zeros, as EnCase records acquisition read errors."""
    header = struct.pack("<I512x", len(ranges))
    array = b"".join(struct.pack("<II", start, count) for start, count in ranges)
    return header + adler(header) + array + adler(array)


def error2_size(ranges: int) -> int:
    return 0 if not ranges else DESCRIPTOR_SIZE + ERROR2_HEADER_SIZE + 8 * ranges + 4


def digest_body(md5: bytes, sha1: bytes) -> bytes:
    """The ``digest`` section (EnCase 6.12 and later): MD5 and SHA-1 of the media."""
    body = md5 + sha1 + bytes(40)
    return body + adler(body)


def hash_body(md5: bytes) -> bytes:
    """The ``hash`` section: the MD5 that ``ewfverify`` compares the media against."""
    body = md5 + bytes(16)
    return body + adler(body)


# What closes the last segment file, besides error2: data (single file), digest, hash, done.
TAIL_SIZE = (DESCRIPTOR_SIZE + VOLUME_SIZE) + (DESCRIPTOR_SIZE + 80) + (DESCRIPTOR_SIZE + 36)
TAIL_SIZE += DESCRIPTOR_SIZE
