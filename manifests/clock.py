"""Clock readings for records: UTC wall time plus the monotonic clock, so a lab can tell
whether the wall clock jumped during a collection."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache

CLOCK_SOURCE = "CLOCK_REALTIME"


@lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def utc_from_ns(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, e.g. ``2026-11-27T05:20:00.123456789Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{frac:09d}Z"


def reading() -> dict[str, str]:
    wall = time.time_ns()
    mono = time.monotonic_ns()
    return {"time": utc_from_ns(wall), "clock": CLOCK_SOURCE, "mono_ns": str(mono)}


def compact_stamp(ns: int | None = None) -> str:
    """``YYYYmmddTHHMMSSZ`` for evidence directory names."""
    ns = time.time_ns() if ns is None else ns
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
