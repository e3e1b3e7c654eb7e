"""The file names in a locate database, read without ``locate``: plocate's format (Debian
12's ``updatedb``, ``/var/lib/plocate/plocate.db``) and mlocate's (``mlocate.db(5)``).

Whatever ``updatedb`` saw when it last ran (daily, from cron or a timer) is in there: a
tool an intruder unpacked in ``/tmp`` and deleted the next day still has its name here.

plocate (plocate's ``db.h``): a header (magic ``\\0plocate``, ``num_docids``, the offset of
the file name index, an optional zstd dictionary), then the index: ``num_docids + 1``
little-endian 64-bit offsets, each pair bounding one zstd frame that holds up to 32
NUL-terminated names. mlocate: magic ``\\0mlocate``, a big-endian configuration size,
the database root, the configuration block, then per directory a header (its time and
NUL-terminated path) and its entries (a type byte, 0 file, 1 directory, 2 end, and the
NUL-terminated name)."""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from typing import Any

import zstandard

PLOCATE = b"\0plocate"
MLOCATE = b"\0mlocate"
_PHEAD = struct.Struct("<8sIIIIQQIIQ")
MAX_BLOCK = 64 * 1024 * 1024  # one block's names, decompressed (32 names: far less)


Buffer = bytes | mmap.mmap  # the database: sliced and searched, never copied whole


class LocateFormatError(ValueError):
    """Not a locate database this reader knows, or a damaged one."""


def format_of(head: bytes) -> str | None:
    if head.startswith(PLOCATE):
        return "plocate"
    if head.startswith(MLOCATE):
        return "mlocate"
    return None


def plocate_blocks(data: Buffer) -> Iterator[bytes]:
    """The file names of a plocate database a block (up to 32 names) at a time, in its
    order, each block the names NUL-separated as stored: searched whole, a block costs
    a few calls instead of a few for each name."""
    if len(data) < _PHEAD.size or not data[:8] == PLOCATE:
        raise LocateFormatError("not a plocate database")
    (_m, version, _hts, _extra, docids, _ht_off, index_off, max_version, dict_len,
     dict_off) = _PHEAD.unpack_from(data)  # fmt: skip
    if version > 1 and max_version < version:
        raise LocateFormatError(f"plocate format version {version} is not known here")
    end = index_off + (docids + 1) * 8
    if end > len(data):
        raise LocateFormatError("the file name index runs past the end of the database")
    offsets = struct.unpack_from(f"<{docids + 1}Q", data, index_off)
    params: dict[str, Any] = {}
    if version >= 1 and dict_len:
        if dict_off + dict_len > len(data):
            raise LocateFormatError("the compression dictionary runs past the end")
        raw = data[dict_off : dict_off + dict_len]
        params["dict_data"] = zstandard.ZstdCompressionDict(raw)
    dctx = zstandard.ZstdDecompressor(**params)
    for start, stop in zip(offsets, offsets[1:], strict=False):
        if not start <= stop <= len(data):
            raise LocateFormatError(f"a block offset ({start}..{stop}) is out of range")
        try:
            block = dctx.decompress(data[start:stop], max_output_size=MAX_BLOCK)
        except zstandard.ZstdError as e:
            raise LocateFormatError(f"a block does not decompress: {e}") from e
        yield block


def plocate_names(data: Buffer) -> Iterator[bytes]:
    """Every file name of a plocate database, in its order."""
    for block in plocate_blocks(data):
        yield from (n for n in block.split(b"\0") if n)


def mlocate_names(data: Buffer) -> Iterator[bytes]:
    """Every file name of an mlocate database (directories, then their entries)."""
    if len(data) < 16 or not data[:8] == MLOCATE:
        raise LocateFormatError("not an mlocate database")
    conf_size = struct.unpack_from(">I", data, 8)[0]
    pos = data.find(b"\0", 16)  # the database root
    if pos < 0:
        raise LocateFormatError("the database root is not terminated")
    pos += 1 + conf_size
    while pos + 16 <= len(data):
        pos += 16  # directory time (sec, nsec) and padding
        stop = data.find(b"\0", pos)
        if stop < 0:
            raise LocateFormatError("a directory path is not terminated")
        directory = data[pos:stop]
        yield directory
        pos = stop + 1
        while pos < len(data):
            kind = data[pos]
            pos += 1
            if kind == 2:
                break
            stop = data.find(b"\0", pos)
            if stop < 0 or kind not in (0, 1):
                raise LocateFormatError("a directory entry is damaged")
            yield directory.rstrip(b"/") + b"/" + data[pos:stop]
            pos = stop + 1


def names(data: Buffer) -> Iterator[bytes]:
    """The file names of a plocate or mlocate database."""
    kind = format_of(data[:8])
    if kind == "plocate":
        return plocate_names(data)
    if kind == "mlocate":
        return mlocate_names(data)
    raise LocateFormatError("neither a plocate nor an mlocate database")


def blocks(data: Buffer, size: int = 32) -> Iterator[bytes]:
    """The file names of a plocate or mlocate database, NUL-separated, a block at a time
    (plocate's own blocks; mlocate's names grouped by ``size``)."""
    if format_of(data[:8]) == "plocate":
        yield from plocate_blocks(data)
        return
    group: list[bytes] = []
    for name in names(data):
        group.append(name)
        if len(group) >= size:
            yield b"\0".join(group)
            group.clear()
    if group:
        yield b"\0".join(group)
