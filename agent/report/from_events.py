"""Findings the collectors recorded themselves (``event: finding``) and the views that
disagreed or could not be read (``event: degraded``), rendered from their data alone.

Collectors are added by other people (kernel views, persistence, containers, a disk
image's bad sectors), so nothing here knows a rule by name: the title is the record's
``message`` or ``reason``, the details are its other fields in words, and the sentence
saying why it matters is the record's own ``why`` field when it has one, else a generic
one for its view or severity. A degraded view is listed before every other finding."""

from __future__ import annotations

from typing import Any

from .bounded import mapping, text
from .evidence import Evidence, to_ns
from .findings import HIGH, INFO, LOW, MEDIUM, Finding, Findings
from .words import plural

SEVERITY = {"high": HIGH, "medium": MEDIUM, "low": LOW, "info": INFO}
MAX_DETAILS = 20  # facts listed under one grouped finding
# Fields every such record has, shown elsewhere (title, refs) or not for people.
_SKIP = {"type", "seq", "prev", "time", "clock", "event", "collector", "severity", "why"}
_SKIP |= {"message", "reason", "rule", "view", "artifact", "source", "mono_ns"}
# Why a degraded view matters, by view, when the record does not say.
VIEW_WHY = {
    "clock": "Every time in this evidence comes from the host's clock: a wrong clock moves "
    "the whole timeline and the reporting deadlines.",
    "processes": "A process missing from the ordinary process list is what a rootkit does "
    "to hide the intruder's programs.",
    "proc-mounts": "A mount over /proc/PID hides a running process from ps and most tools.",
    "sockets": "A connection no process owns may belong to a hidden process or a kernel backdoor.",
    "preload": "A library forced into every program can make every tool on the host lie.",
    "loader": "Code injected into this tool's own process could have altered what it saw.",
}


def _words(key: str) -> str:
    """A field name as words: ``skew_s`` -> ``skew (seconds)``, ``a_b`` -> ``a b``."""
    unit = {"_s": " (seconds)", "_ms": " (milliseconds)", "_ns": " (nanoseconds)"}
    tail = next((u for u in unit if key.endswith(u)), None)
    base = key[: -len(tail)] if tail else key
    return base.replace("_", " ").replace("-", " ") + (unit[tail] if tail else "")


def facts(record: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[str]:
    """The record's own fields, one ``name: value`` line each, in words: scalars as they
    are, lists of scalars joined, an object by its scalar fields, a list of objects by
    its length (the journal record holds them all)."""
    out = []
    for key, value in record.items():
        if key in _SKIP or key in skip or value is None or value == "" or value == []:
            continue
        if isinstance(value, dict):
            if _inline(value):
                out.append(f"{_words(key)}: {_inline(value)}")
        elif isinstance(value, list):
            if all(_scalar(v) for v in value):
                out.append(f"{_words(key)}: " + ", ".join(_said(v) for v in value[:20]))
            else:
                shown = [_inline(mapping(v)) for v in value[:3]]
                more = f", and {len(value) - 3:,} more in the journal" if len(value) > 3 else ""
                out.append(
                    f"{_words(key)} ({plural(len(value), 'entry', 'entries')}): "
                    + "; ".join(shown)
                    + more
                )
        else:
            out.append(f"{_words(key)}: {_said(value)}")
    return out


def _said(v: Any, limit: int = 400) -> str:
    """A scalar in words (``None`` is "unknown", never the Python word)."""
    if v is None:
        return "unknown"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return text(v, limit)


def _opt(r: dict[str, Any], key: str, limit: int = 600) -> str:
    """A record's text field, or "" when it is absent or not text."""
    v = r.get(key)
    return text(v, limit) if isinstance(v, (str, int)) and not isinstance(v, bool) else ""


def _inline(value: dict[str, Any]) -> str:
    """An object's scalar fields on one line: ``pid 4242, name sshd``."""
    inner = [f"{_words(k)} {_said(v, 200)}" for k, v in value.items() if _scalar(v)]
    return ", ".join(inner[:12])


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _source(record: dict[str, Any]) -> str:
    src = record.get("source")
    if isinstance(src, dict):
        return text(src.get("path") or src.get("display") or "", 400)
    return text(src, 400) if _scalar(src) else ""


def degraded(ev: Evidence, out: Findings) -> None:
    """One finding per view that disagreed (several records of one view are grouped)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in ev.of_type("event:degraded"):
        key = (text(r.get("view"), 100), SEVERITY.get(str(r.get("severity")).lower(), MEDIUM))
        groups.setdefault(key, []).append(r)
    for (view, severity), records in groups.items():
        first = records[0]
        reasons = [_opt(r, "reason") for r in records]
        title = (
            f"degraded view ({view}): {reasons[0]}"
            if len(records) == 1
            else f"degraded view ({view}): {len(records)} disagreements, first: {reasons[0]}"
        )
        details = facts(first) if len(records) == 1 else reasons[1 : MAX_DETAILS + 1]
        out.add(
            Finding(
                "degraded",
                severity,
                title,
                [{"seq": r.get("seq")} for r in records[:MAX_DETAILS]],
                details,
                to_ns(first.get("time")),
                why=_opt(first, "why") or VIEW_WHY.get(view),
                degraded=True,
            )
        )
    left = ev.journal.left_out("event:degraded")
    if left:
        ev.not_examined(
            None,
            f"{left} more degraded-view record(s) were not listed",
            "the report lists the first 500; verify and the journal have all of them",
        )


def collected(ev: Evidence, out: Findings) -> None:
    """The collectors' own findings, one per rule (its facts listed under it)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in ev.of_type("event:finding"):
        sev = SEVERITY.get(str(r.get("severity")).lower(), MEDIUM)
        key = (text(r.get("collector"), 100), text(r.get("rule"), 200), sev)
        groups.setdefault(key, []).append(r)
    capped = {
        (text(r.get("collector"), 100), text(r.get("rule"), 200)): r.get("total")
        for r in ev.of_type("event:findings-capped")
    }
    for (collector, rule, severity), records in groups.items():
        first = records[0]
        total = capped.get((collector, rule)) or len(records)
        message = _opt(first, "message") or _words(rule)
        title = message if total == 1 else f"{_words(rule)}: {total:,} found, e.g. {message}"
        if len(records) == 1:
            details = ([f"on the host: {_source(first)}"] if _source(first) else []) + facts(first)
        else:
            details = [_opt(r, "message", 400) or _source(r) for r in records[:MAX_DETAILS]]
            if total > MAX_DETAILS:
                details.append(f"... and {total - MAX_DETAILS:,} more (in the journal)")
        refs = [
            {"seq": r.get("seq"), **({"artifact": r["artifact"]} if r.get("artifact") else {})}
            for r in records[:MAX_DETAILS]
        ]
        why = _opt(first, "why") or (
            f"The {collector} collector flags this ({_words(rule)}) as a possible sign of "
            "tampering or intrusion: check it before trusting the host."
        )
        category = _opt(first, "category", 100) or collector
        out.add(Finding(category, severity, title, refs, details, to_ns(first.get("time")), why))
