"""Logins from preserved files: ``wtmp``/``btmp``/``utmp`` records and sshd lines in auth
logs. Parsing is bounded and never fails: a malformed record is skipped."""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from datetime import datetime
from typing import Any

# utmp(5) as glibc writes it on 64-bit Linux (x86_64, aarch64): 384-byte records.
UTMP = struct.Struct("<hh i 32s 4s 32s 256s hh i ii 4i 20s")
UT_TYPES = {
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
LOGIN_FILES = ("wtmp", "btmp", "utmp")
MAX_RECORDS = 100_000
MAX_AUTH_LINES = 200_000

_SSHD = re.compile(
    r"sshd\[(?P<pid>\d+)\]: (?P<result>Accepted|Failed) (?P<method>\S+) for "
    r"(?:invalid user )?(?P<user>\S+) from (?P<addr>\S+) port (?P<port>\d+)"
)
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)")
_BSD = re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _address(words: tuple[int, ...]) -> str | None:
    if any(words[1:]):
        return str(ipaddress.IPv6Address(struct.pack("<4i", *words)))
    if words[0]:
        return socket.inet_ntoa(struct.pack("<i", words[0]))
    return None


def parse_utmp(data: bytes) -> list[dict[str, Any]]:
    """Records with a type we know, as dicts with ``time_ns`` (from tv_sec/tv_usec)."""
    rows = []
    for offset in range(0, min(len(data), MAX_RECORDS * UTMP.size) - UTMP.size + 1, UTMP.size):
        f = UTMP.unpack_from(data, offset)
        kind = UT_TYPES.get(f[0])
        if kind is None:
            continue
        rows.append(
            {
                "type": kind,
                "pid": f[2],
                "line": _cstr(f[3]),
                "user": _cstr(f[5]),
                "host": _cstr(f[6]),
                "time_ns": f[10] * 1_000_000_000 + max(0, f[11]) * 1000,
                "address": _address(f[12:16]),
            }
        )
    return rows


def line_time(line: str, year: int, utc_offset_s: int | None) -> int | None:
    """The timestamp that starts a syslog line, as ns since the epoch (UTC).

    ISO 8601 stamps carry their zone; classic ``Mmm dd hh:mm:ss`` stamps are the host's
    local time without a year, so the caller gives the year and the host's UTC offset
    (None: assume UTC, and the caller says so)."""
    m = _ISO.match(line)
    if m:
        from .evidence import to_ns

        return to_ns(m.group(1))
    m = _BSD.match(line)
    if not m or m.group(1) not in _MONTHS:
        return None
    try:
        dt = datetime(
            year,
            _MONTHS.index(m.group(1)) + 1,
            int(m.group(2)),
            int(m.group(3)),
            int(m.group(4)),
            int(m.group(5)),
        )
    except ValueError:
        return None
    from datetime import UTC

    seconds = int(dt.replace(tzinfo=UTC).timestamp()) - (utc_offset_s or 0)
    return seconds * 1_000_000_000


def parse_auth(text: str, year: int, utc_offset_s: int | None) -> list[dict[str, Any]]:
    """sshd ``Accepted``/``Failed`` lines: who, from where, how, when."""
    rows = []
    for n, line in enumerate(text.splitlines()[:MAX_AUTH_LINES], 1):
        m = _SSHD.search(line)
        if not m:
            continue
        rows.append(
            {
                "line_no": n,
                "result": m.group("result").lower(),
                "method": m.group("method"),
                "user": m.group("user"),
                "address": m.group("addr"),
                "port": int(m.group("port")),
                "time_ns": line_time(line, year, utc_offset_s),
            }
        )
    return rows
