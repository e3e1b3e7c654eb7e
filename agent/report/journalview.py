"""What the report keeps of the journal's records, read once, in bounded memory.

A journal of a million files is a million ``artifact`` records; the report shows a
handful of other records (start, end, transfers, actions, errors) and, of the journal's
story, the timeline's collection and custody lanes. ``JournalView.feed`` sees every
record once and keeps only those, each clipped (``bounded.clip``) and each kind up to a
count; it counts what it did not keep, so the report can say how many there were."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from collectors.redact import NOTE as REDACTED_NOTE
from collectors.redact import redact_fields

from . import words
from .bounded import clip, text
from .values import to_ns

# Records kept whole (clipped), per type: the first N. Counted beyond that.
KEEP = {"transfer": 100, "action": 300, "error": 200}
# ``event`` records kept, per ``event`` name (``of_type("event:finding")``): what the
# collectors found, the views that disagreed, the clock check.
# A finding's fields that are not text it quotes from the host.
_NOT_QUOTED = {"type", "seq", "prev", "time", "clock", "event", "collector", "severity", "why"}
_NOT_QUOTED |= {"rule", "artifact", "source", "mono_ns"}
KEEP_EVENTS = {"finding": 1000, "degraded": 500, "findings-capped": 200, "clock-check": 5}
RECORD_BUDGET = 16 * 1024  # per kept record; a genuine one is under 2 KiB
START_BUDGET = 64 * 1024  # the start record (argv, host, collectors)
MAX_EVENTS = 2_000  # timeline events from the journal, besides errors
MAX_ERROR_EVENTS = 200
EVENT_TEXT = 1024  # characters of one event's text


class JournalEvent(NamedTuple):
    """One row of the timeline's collection, custody or errors lane."""

    ns: int
    lane: str
    text: str
    seq: int | None
    notable: bool = False


def _event(r: dict[str, Any], ns: int) -> JournalEvent | None:
    """The timeline row for a record, or None for kinds the timeline does not show."""
    kind, seq = r.get("type"), r.get("seq")
    seq = seq if isinstance(seq, int) else None

    def field_(key: str) -> str:
        return text(r.get(key), EVENT_TEXT)

    if kind == "start":
        return JournalEvent(ns, "collection", "collection started", seq, True)
    if kind == "seal":
        reason = words.seal_reason(field_("reason"))
        return JournalEvent(ns, "custody", f"journal sealed {reason}", seq)
    if kind == "transfer":
        return JournalEvent(ns, "custody", f"custody transferred to {field_('to')}", seq, True)
    if kind == "end":
        return JournalEvent(ns, "collection", f"collection ended: {field_('status')}", seq)
    if kind == "action":
        argv = r.get("argv") or r.get("command")
        what = text(r.get("action"), EVENT_TEXT) if isinstance(r.get("action"), str) else ""
        shown = words.argv(argv, EVENT_TEXT) if argv else what.replace("-", " ")
        return JournalEvent(ns, "collection", f"ran {shown}" if argv else shown, seq, True)
    if kind == "event":
        name = r.get("event")
        if name == "degraded":
            return JournalEvent(ns, "findings", f"degraded view: {field_('reason')}", seq, True)
        if name == "finding":
            serious = str(r.get("severity")).upper() in ("HIGH", "MEDIUM")
            return JournalEvent(ns, "findings", field_("message"), seq, serious)
        return JournalEvent(ns, "collection", text(name, EVENT_TEXT).replace("-", " "), seq)
    if kind == "collector":
        return JournalEvent(ns, "collection", f"collector {field_('name')} finished", seq)
    if kind == "error":
        src = r.get("source")
        path = text(src.get("path", ""), EVENT_TEXT) if isinstance(src, dict) else ""
        return JournalEvent(ns, "errors", f"error: {path} {field_('reason')}".strip(), seq)
    return None


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    """A finding as the report may quote it (title, details, timeline row): collectors
    redact what they record (collectors/redact.py); an older agent or a plug-in may not."""
    keep = {k: v for k, v in record.items() if k in _NOT_QUOTED}
    shown, hidden = redact_fields({k: v for k, v in record.items() if k not in keep})
    if hidden and "redacted" not in shown:
        shown["redacted"] = f"{hidden} {REDACTED_NOTE}"
    return {**keep, **shown}


@dataclass
class JournalView:
    start: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    kept: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    events: list[JournalEvent] = field(default_factory=list)
    events_left_out: int = 0
    error_events: int = 0
    other_events: int = 0

    def feed(self, r: dict[str, Any]) -> None:
        kind = r.get("type")
        if kind == "event" and r.get("event") == "finding":
            r = _redacted(r)
        self.counts[str(kind)] += 1
        if kind == "artifact":
            return  # the bulk: ArtifactIndex's, not ours
        if kind == "start" and r.get("seq") == 0:
            self.start = clip(r, START_BUDGET)
        elif kind == "end":
            self.end = clip(r, RECORD_BUDGET)
        elif kind in KEEP:
            self._keep(str(kind), r, KEEP[str(kind)])
        elif kind == "event" and r.get("event") in KEEP_EVENTS:
            name = f"event:{r['event']}"
            self.counts[name] += 1
            self._keep(name, r, KEEP_EVENTS[r["event"]])
        ns = to_ns(r.get("time"))
        event = _event(r, ns) if ns is not None else None
        if event is None:
            return
        if kind == "error":
            self.error_events += 1
            if self.error_events > MAX_ERROR_EVENTS:
                return
        else:
            self.other_events += 1
            if self.other_events > MAX_EVENTS:
                self.events_left_out += 1
                return
        self.events.append(event)

    def _keep(self, kind: str, r: dict[str, Any], limit: int) -> None:
        kept = self.kept.setdefault(kind, [])
        if len(kept) < limit:
            kept.append(clip(r, RECORD_BUDGET))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The kept records of ``kind`` (the first ``KEEP[kind]``), in journal order."""
        return self.kept.get(kind, [])

    def left_out(self, kind: str) -> int:
        """How many records of ``kind`` were counted but not kept."""
        return max(0, self.counts[kind] - len(self.of_type(kind)))
