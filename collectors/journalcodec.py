"""The two conversions a journal field goes through before it is exported: decompressing
a data object's payload, and turning the ``FIELD=value`` bytes into what
``journalctl -o json`` prints.

Compression (the object flag): XZ through the standard library's ``lzma``; LZ4 (the
block format behind an 8-byte little-endian uncompressed size, as journald writes it)
by the small decoder below; ZSTD through ``zstandard`` when it is installed (it is a
dependency, and in the kit). Every decoder is bounded by ``MAX_FIELD`` so a crafted
object cannot make the tool allocate gigabytes. A payload that cannot be decoded raises
``CodecError`` with the reason: the caller records the field as not decoded and goes on.

Values: journalctl prints a value as a JSON string when it is valid UTF-8 with no control
character other than tab and newline (systemd's ``utf8_is_printable``), else as an array
of byte values; a field met more than once in an entry becomes an array of values."""

from __future__ import annotations

import lzma
import re
import struct
from dataclasses import dataclass
from typing import Any

try:  # optional at import so a missing wheel makes ZSTD fields "not decoded", not a crash
    import zstandard
except ImportError:  # pragma: no cover - the kit and the test environment both have it
    zstandard = None  # type: ignore[assignment]

XZ, LZ4, ZSTD = 1, 2, 4  # data object flags
NAMES = {XZ: "XZ", LZ4: "LZ4", ZSTD: "ZSTD"}
MAX_FIELD = 64 * 1024 * 1024  # bytes of one decoded field (journald's own limit is 768 MiB)
MAX_DECODED = 8 * 1024**3  # bytes decompressed in one run, every file together
_LE64 = struct.Struct("<Q")
# systemd's is_unicode_control and unichar_is_valid: C0 controls but tab and newline, DEL
# and the C1 controls, the non-characters U+FDD0..U+FDEF and U+xxFFFE/U+xxFFFF. Searched
# in three simple patterns: one class holding the 34 astral non-characters took 7 s per
# 50 MiB field, so a journal of such fields kept the collector busy for hours.
_NOT_PRINTABLE_ASCII = re.compile(b"[\x00-\x08\x0b-\x1f\x7f]")
_NOT_PRINTABLE_BMP = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")
# U+xxFFFE and U+xxFFFF above the BMP in (valid) UTF-8: F0-F4, then 8F/9F/AF/BF, BF, BE/BF.
_ASTRAL_NONCHAR = re.compile(b"[\xf0-\xf4][\x8f\x9f\xaf\xbf]\xbf[\xbe\xbf]")


class CodecError(ValueError):
    """A payload that cannot be decoded; the message says why."""


class TooLarge(CodecError):
    """A payload that decodes to more than ``MAX_FIELD`` (decoded that far, then dropped)."""


@dataclass
class DecodeBudget:
    """Bytes left to decompress. Each field is capped, but a file of kilobyte payloads
    that each decode to the cap would keep the collector busy for hours: the run shares
    one budget, and past it fields are left compressed (named, not decoded)."""

    left: int = MAX_DECODED


def decompress(flags: int, payload: bytes, budget: DecodeBudget | None = None) -> bytes:
    """The field bytes of a data object's payload, given its compression flags."""
    kind = flags & (XZ | LZ4 | ZSTD)
    if kind == 0:
        return payload
    decoder = {XZ: _xz, LZ4: _lz4, ZSTD: _zstd}.get(kind)
    if decoder is None:
        raise CodecError(f"more than one compression flag set ({flags:#x})")
    budget = budget or DecodeBudget()
    if budget.left <= 0:
        raise CodecError(f"the run's {MAX_DECODED} bytes of decompression are used up")
    try:
        out = decoder(payload)
    except TooLarge:
        budget.left -= MAX_FIELD
        raise
    budget.left -= len(out)
    return out


def _xz(payload: bytes) -> bytes:
    d = lzma.LZMADecompressor()
    try:
        out = d.decompress(payload, max_length=MAX_FIELD + 1)
    except lzma.LZMAError as e:
        raise CodecError(f"XZ data is corrupt: {e}") from e
    if len(out) > MAX_FIELD:
        raise TooLarge(f"XZ field larger than {MAX_FIELD} bytes: not decoded")
    return out


def _zstd(payload: bytes) -> bytes:
    if zstandard is None:
        raise CodecError("compressed with ZSTD, not decoded (python zstandard not installed)")
    # Read in steps, never past MAX_FIELD: a one-shot decompress would first build the
    # whole output, and a few kilobytes of RLE blocks describe gigabytes.
    chunks, total = [], 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
            while total <= MAX_FIELD:
                chunk = reader.read(min(1 << 20, MAX_FIELD + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except zstandard.ZstdError as e:
        raise CodecError(f"ZSTD data is corrupt: {e}") from e
    if total > MAX_FIELD:
        raise TooLarge(f"ZSTD field larger than {MAX_FIELD} bytes: not decoded")
    return b"".join(chunks)


def _lz4(payload: bytes) -> bytes:
    if len(payload) < 8:
        raise CodecError("LZ4 data shorter than its size prefix")
    (size,) = _LE64.unpack_from(payload)
    if size > MAX_FIELD:
        raise CodecError(f"LZ4 field of {size} bytes: larger than {MAX_FIELD}, not decoded")
    try:
        out = lz4_block(memoryview(payload)[8:], size)
    except IndexError as e:
        raise CodecError("LZ4 data ends in the middle of a sequence") from e
    if len(out) != size:
        raise CodecError(f"LZ4 data decodes to {len(out)} bytes, its prefix says {size}")
    return out


def _length(src: memoryview, i: int, n: int) -> tuple[int, int]:
    """An LZ4 length nibble's continuation bytes (255 means "and more")."""
    while True:
        b = src[i]
        i += 1
        n += b
        if b != 255:
            return n, i


def lz4_block(src: memoryview, limit: int) -> bytes:
    """Decode one LZ4 block (literals, then matches back into the output) of at most
    ``limit`` bytes. Raises CodecError on an offset before the start of the output."""
    out = bytearray()
    i, end = 0, len(src)
    while i < end:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            lit, i = _length(src, i, lit)
        if len(out) + lit > limit or i + lit > end:
            raise CodecError("LZ4 literals run past the block or the declared size")
        out += src[i : i + lit]
        i += lit
        if i >= end:
            break  # the last sequence has literals only
        offset = src[i] | src[i + 1] << 8
        i += 2
        match = token & 15
        if match == 15:
            match, i = _length(src, i, match)
        match += 4
        if offset == 0 or offset > len(out):
            raise CodecError(f"LZ4 match offset {offset} points before the data")
        if len(out) + match > limit:
            raise CodecError("LZ4 data decodes past its declared size")
        start = len(out) - offset
        if offset >= match:
            out += out[start : start + match]
        else:  # an overlapping match repeats the last ``offset`` bytes
            pattern = bytes(out[start:])
            whole, rest = divmod(match, offset)
            out += pattern * whole + pattern[:rest]
    return bytes(out)


def json_value(value: bytes) -> str | list[int]:
    """A field value as journalctl's JSON output prints it."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return list(value)
    if text.isascii():
        bad = _NOT_PRINTABLE_ASCII.search(value) is not None
    else:
        bad = bool(_NOT_PRINTABLE_BMP.search(text) or _ASTRAL_NONCHAR.search(value))
    return list(value) if bad else text


def add_field(entry: dict[str, Any], name: str, value: str | list[int]) -> None:
    """Add one value; a field met again in the same entry becomes an array of values."""
    if name not in entry:
        entry[name] = value
        return
    old = entry[name]
    if isinstance(old, list) and old and not isinstance(old[0], int):
        old.append(value)
    else:
        entry[name] = [old, value]
