"""The partition table at the start of a device, as it is on the disk (not as the kernel
mapped it): recorded before imaging, so the journal says what the image should hold even
if the image itself is lost. MBR and GPT; anything else is "none found"."""

from __future__ import annotations

import os
import struct
import uuid
from typing import Any

MBR_SIGNATURE = b"\x55\xaa"
GPT_SIGNATURE = b"EFI PART"
GPT_ENTRIES_MAX = 256  # the common 128, with room; a hostile header cannot make us read more


def read_table(fd: int, sector: int) -> dict[str, Any]:
    """``{"type": "gpt" | "mbr" | "none", "partitions": [...]}``; read errors are said,
    never raised (a bad first sector is itself worth recording)."""
    try:
        head = os.pread(fd, 2 * sector, 0)
    except OSError as e:
        return {"type": "unreadable", "error": e.strerror or str(e), "partitions": []}
    if len(head) < 512 or head[510:512] != MBR_SIGNATURE:
        return {"type": "none", "partitions": []}
    mbr = _mbr(head[:512])
    if any(p["type_id"] == 0xEE for p in mbr) and head[sector : sector + 8] == GPT_SIGNATURE:
        try:
            return _gpt(fd, sector, head[sector : 2 * sector])
        except (OSError, struct.error, ValueError, OverflowError) as e:  # an offset past off_t
            return {"type": "gpt", "error": f"GPT unreadable: {e}", "partitions": mbr}
    return {"type": "mbr", "partitions": mbr}


def _mbr(block: bytes) -> list[dict[str, Any]]:
    found = []
    for i in range(4):
        entry = block[446 + 16 * i : 462 + 16 * i]
        kind, start, count = entry[4], *struct.unpack_from("<II", entry, 8)
        if kind and count:
            found.append(
                {
                    "number": i + 1,
                    "type_id": kind,
                    "bootable": entry[0] == 0x80,
                    "start_sector": start,
                    "sectors": count,
                }
            )
    return found


def _gpt(fd: int, sector: int, header: bytes) -> dict[str, Any]:
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    if size < 128 or size > 4096:
        raise ValueError(f"entry size {size}")
    count = min(count, GPT_ENTRIES_MAX)
    table = os.pread(fd, count * size, entries_lba * sector)
    disk_guid = str(uuid.UUID(bytes_le=header[56:72]))
    found = []
    for i in range(len(table) // size):
        entry = table[i * size : (i + 1) * size]
        if entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        name = entry[56:128].decode("utf-16-le", "replace").split("\x00", 1)[0]
        found.append(
            {
                "number": i + 1,
                "type_guid": str(uuid.UUID(bytes_le=entry[:16])),
                "guid": str(uuid.UUID(bytes_le=entry[16:32])),
                "start_sector": first,
                "sectors": last - first + 1,
                "name": name,
            }
        )
    return {"type": "gpt", "disk_guid": disk_guid, "partitions": found}
