"""Logins from preserved files: ``wtmp``/``btmp``/``utmp`` records and sshd lines in auth
logs. Parsing is bounded and never fails: a malformed record is skipped. Files are read
whole, as streams (a record or a line at a time), so a login after millions of failed
ones is still found; only a file beyond the byte bounds below is cut, and the report
says where."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from collectors import utmp

from .values import to_ns

LOGIN_FILES = ("wtmp", "btmp", "utmp")
MAX_UTMP_BYTES = 1024**3  # of one wtmp/btmp/utmp: 2.8 million records
UTMP_CHUNK = utmp.RECORD.size * 4096
MAX_AUTH_BYTES = 4 * 1024**3  # of one auth log
MAX_LINE = 64 * 1024  # a longer auth log line is examined in its first 64 KiB

_SSHD = re.compile(
    r"sshd\[(?P<pid>\d+)\]: (?P<result>Accepted|Failed) (?P<method>\S+) for "
    r"(?:invalid user )?(?P<user>\S+) from (?P<addr>\S+) port (?P<port>\d+)"
)
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)")
_BSD = re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def parse_utmp(data: bytes) -> list[dict[str, Any]]:
    """Records with a type we know (the report ignores unknown ones), with ``time_ns``."""
    return [
        {**r, "time_ns": r["time_s"] * 1_000_000_000 + max(0, r["time_us"]) * 1000}
        for r in utmp.parse_utmp(data)
        if r["type"] in utmp.TYPES.values()
    ]


def line_time(line: str, year: int, utc_offset_s: int | None) -> int | None:
    """The timestamp that starts a syslog line, as ns since the epoch (UTC).

    ISO 8601 stamps carry their zone; classic ``Mmm dd hh:mm:ss`` stamps are the host's
    local time without a year, so the caller gives the year and the host's UTC offset
    (None: assume UTC, and the caller says so)."""
    m = _ISO.match(line)
    if m:
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


def auth_row(
    line: bytes, number: int, year: int, utc_offset_s: int | None
) -> dict[str, Any] | None:
    """An sshd ``Accepted``/``Failed`` line: who, from where, how, when; else None."""
    if b"sshd[" not in line:  # most lines: no decoding, no regular expression
        return None
    text = line.decode("utf-8", "replace")
    m = _SSHD.search(text)
    if not m or len(m.group("port")) > 5:
        return None
    return {
        "line_no": number,
        "result": m.group("result").lower(),
        "method": m.group("method"),
        "user": m.group("user"),
        "address": m.group("addr"),
        "port": int(m.group("port")),
        "time_ns": line_time(text, year, utc_offset_s),
    }
