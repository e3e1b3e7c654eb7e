"""Logins from preserved files: ``wtmp``/``btmp``/``utmp`` records and sshd lines in auth
logs. Parsing is bounded and never fails: a malformed record is skipped."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from collectors import utmp

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


def parse_utmp(data: bytes) -> list[dict[str, Any]]:
    """Records with a type we know (the report ignores unknown ones), with ``time_ns``."""
    return [
        {**r, "time_ns": r["time_s"] * 1_000_000_000 + max(0, r["time_us"]) * 1000}
        for r in utmp.parse_utmp(data, MAX_RECORDS)
        if r["type"] in utmp.TYPES.values()
    ]


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
