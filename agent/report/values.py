"""Times and names as the report shows them: journal times to nanoseconds and back, and
the host path an artifact was copied from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def to_ns(text: Any) -> int | None:
    """``2026-11-27T05:20:00.123456789Z`` (any fraction, an offset, a space for ``T``, or a
    date alone) -> ns since the epoch; None when it is not such a time."""
    if not isinstance(text, str) or len(text) > 128:
        return None
    text = text.strip()
    if len(text) == 10:  # a date alone: midnight UTC
        text += "T00:00:00"
    if len(text) < 19:
        return None
    text = text[:10] + "T" + text[11:]
    base, frac, zone = text[:19], "", "+00:00"
    rest = text[19:]
    if rest.startswith("."):
        digits = len(rest) - len(rest[1:].lstrip("0123456789"))
        frac, rest = rest[1:digits], rest[digits:]
    if rest not in ("", "Z", "z"):
        zone = rest
    try:
        dt = datetime.fromisoformat(base + zone)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    seconds = int(dt.timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def utc_text(ns: int) -> str:
    """Whole-second UTC for people; the journal keeps the nanoseconds. A time no calendar
    holds (a forged ``mtime_ns`` of 10**30) is shown as a number, not raised."""
    try:
        return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"(out of range: {ns} ns)"


def source_name(artifact: dict[str, Any]) -> str:
    """The host path an artifact was copied from, for people: a deleted executable copied
    through ``/proc/PID/exe`` is named by the executable's path (kept in its record)."""
    path = str((artifact.get("source") or {}).get("path") or artifact.get("path"))
    exe = artifact.get("exe")
    if path.startswith("/proc/") and path.endswith("/exe") and isinstance(exe, str) and exe:
        return f"{exe} (via {path})"
    return path
