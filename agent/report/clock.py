"""Which clock the report's times and deadlines are counted from, and how far to trust it.

The ``clock`` collector checked the host's wall clock against what it cannot easily fake
(the kernel, the boot record, the newest logs, the tool's build time, the responder's
``--reference-time``) and journaled the result (``event: clock-check``; a skew past its
limit is also a ``degraded`` record). The deadlines default to the collection start; when
the responder gave a reference time, that start is corrected onto the responder's clock,
and the report says so."""

from __future__ import annotations

from typing import NamedTuple

from .bounded import mapping
from .evidence import Evidence
from .words import plural

REFERENCE = "the responder's --reference-time"
_NS = 1_000_000_000


class ClockView(NamedTuple):
    """``offset_ns``: add to a host time to get the responder's (0 without a reference)."""

    offset_ns: int
    trusted: bool
    checked: int  # how many sources the clock was checked against
    worst_s: int
    words: str  # "the host's clock, checked against 4 sources (largest difference 0 s)"


def _skew_words(seconds: int) -> str:
    s = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            return plural(s // size, unit)
    return plural(s, "second")


def view(ev: Evidence) -> ClockView:
    """The clock check of this evidence, or that there was none."""
    checks_records = ev.of_type("event:clock-check")
    bad = [r for r in ev.of_type("event:degraded") if r.get("view") == "clock"]
    if not checks_records:
        words = (
            "the host's clock, which this collection did not check (no clock collector ran); "
            "give --detected-at from a clock you trust"
        )
        return ClockView(0, not bad, 0, 0, words)
    checks = [mapping(c) for c in checks_records[-1].get("checks") or []]
    skews: list[int] = [c["skew_s"] for c in checks if isinstance(c.get("skew_s"), int)]
    worst = max((abs(s) for s in skews), default=0)
    ref = next((c for c in checks if c.get("source") == REFERENCE), None)
    if ref is not None and isinstance(ref.get("skew_s"), int):
        skew = int(ref["skew_s"])
        words = (
            f"the responder's own clock (--reference-time {ref.get('reference_time')}): the "
            f"host's clock was {_skew_words(skew)} {'ahead' if skew > 0 else 'behind'}, "
            "and the collection start is corrected by that much"
            if abs(skew) >= 1
            else f"the host's clock, which agreed with the responder's --reference-time "
            f"({ref.get('reference_time')})"
        )
        return ClockView(-skew * _NS, True, len(checks), worst, words)
    if bad:
        first = bad[0]
        words = (
            f"the host's clock, which is NOT to be trusted: {first.get('reason')}; give "
            "--detected-at from a clock you trust"
        )
        return ClockView(0, False, len(checks), worst, words)
    words = (
        f"the host's clock, checked against {plural(len(checks), 'source')} "
        f"(largest difference {_skew_words(worst)})"
    )
    return ClockView(0, True, len(checks), worst, words)
