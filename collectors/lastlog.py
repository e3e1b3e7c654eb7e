"""``/var/log/lastlog`` and ``/var/log/faillog``, parsed: binary files indexed by user
ID that no text tool reads, so the evidence carries a readable view beside the raw copy.

lastlog (``struct lastlog``, glibc on x86-64 and arm64): ``int32 ll_time``, ``char
ll_line[32]``, ``char ll_host[256]``; 292 bytes a user, at offset ``uid * 292``. faillog
(``struct faillog``, shadow-utils): ``short fail_cnt``, ``short fail_max``, ``char
fail_line[12]``, ``time_t fail_time``, ``long fail_locktime``; 32 bytes a user. Both are
sparse (a user ID of 4,000,000,000 makes a terabyte-long lastlog of holes), so only the
data regions are read (``SEEK_DATA``/``SEEK_HOLE``), at most ``MAX_READ`` bytes, and
all-zero records (never logged in) are left out."""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from typing import Any

from manifests.clock import utc_from_ns

from .source import open_source

LASTLOG = struct.Struct("<i32s256s")
FAILLOG = struct.Struct("<hh12sqq")
MAX_READ = 64 * 1024 * 1024
MAX_ROWS = 100_000


def _regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each data region; the whole file where holes cannot be asked."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data after pos
                return
            yield pos, size
            return
        yield start, min(end, size)
        pos = end


def _records(path: bytes, record: struct.Struct) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(index, fields) of every record that is not all zeros."""
    fd = open_source(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        budget, rows, width = MAX_READ, 0, record.size
        for start, end in _regions(fd, st.st_size):
            first = start - start % width
            os.lseek(fd, first, os.SEEK_SET)
            data = os.read(fd, min(end - first + width, budget))
            budget -= len(data)
            for off in range(0, len(data) - width + 1, width):
                chunk = data[off : off + width]
                if chunk.count(0) == width:
                    continue
                rows += 1
                if rows > MAX_ROWS:
                    return
                yield (first + off) // width, record.unpack(chunk)
            if budget <= 0:
                return
    finally:
        os.close(fd)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _when(seconds: int) -> str | None:
    """The time as text; None for a time no calendar holds (``fail_time`` is a 64-bit
    ``time_t``: whoever wrote the file can put year 36812 there), ``time_s`` keeps it."""
    try:
        return utc_from_ns(seconds * 10**9) if seconds > 0 else None
    except (ValueError, OverflowError, OSError):
        return None


def parse_lastlog(path: bytes, names: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    seen: set[int] = set()
    for uid, (when, line, host) in _records(path, LASTLOG):
        if uid in seen:
            continue
        seen.add(uid)
        rows.append({
            "uid": uid, "user": names.get(uid), "time": _when(when), "time_s": when,
            "line": _text(line), "host": _text(host),
        })  # fmt: skip
    return rows


def parse_faillog(path: bytes, names: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    seen: set[int] = set()
    for uid, (count, most, line, when, lock) in _records(path, FAILLOG):
        if uid in seen:
            continue
        seen.add(uid)
        rows.append({
            "uid": uid, "user": names.get(uid), "failures": count, "max": most,
            "line": _text(line), "time": _when(when), "time_s": when, "lock_s": lock,
        })  # fmt: skip
    return rows
