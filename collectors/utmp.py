"""utmp/wtmp/btmp records (utmp(5)), parsed from bytes: the live collector and the report
both read them, so there is one parser."""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

# glibc on x86_64 and aarch64: 384-byte records.
RECORD = struct.Struct("<hh i 32s 4s 32s 256s hh i ii 4i 20s")
TYPES = {
    1: "RUN_LVL",
    2: "BOOT_TIME",
    3: "NEW_TIME",
    4: "OLD_TIME",
    5: "INIT_PROCESS",
    6: "LOGIN_PROCESS",
    7: "USER_PROCESS",
    8: "DEAD_PROCESS",
    9: "ACCOUNTING",
}


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _address(words: tuple[int, ...]) -> str | None:
    if any(words[1:]):
        return str(ipaddress.IPv6Address(struct.pack("<4i", *words)))
    if words[0]:
        return socket.inet_ntoa(struct.pack("<i", words[0]))
    return None


def parse_utmp(data: bytes, max_records: int | None = None) -> list[dict[str, Any]]:
    """Every non-empty record (psutil.users() keeps only USER_PROCESS; boot time, run
    level and dead sessions also tell the story). Unknown types keep their number."""
    end = len(data) if max_records is None else min(len(data), max_records * RECORD.size)
    rows = []
    for offset in range(0, end - RECORD.size + 1, RECORD.size):
        f = RECORD.unpack_from(data, offset)
        if f[0] == 0:  # EMPTY
            continue
        rows.append(
            {
                "type": TYPES.get(f[0], str(f[0])),
                "pid": f[2],
                "line": _cstr(f[3]),
                "id": _cstr(f[4]),
                "user": _cstr(f[5]),
                "host": _cstr(f[6]),
                "exit": [f[7], f[8]],
                "session": f[9],
                "time_s": f[10],
                "time_us": f[11],
                "address": _address(f[12:16]),
            }
        )
    return rows
