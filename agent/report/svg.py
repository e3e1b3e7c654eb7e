"""The timeline as an inline SVG that prints: notable events labelled in words on the
page (a tooltip is lost on paper), on an axis chosen around the incident.

Two panels, each with its own linear scale. The incident window runs from the earliest
notable host event (at most ``WINDOW_DAYS`` before the collection; a day when nothing is
notable) to the end of the collection: logins, suspicious processes, persistence
changes, log gaps and the collectors' findings, with the collection marked. Older events
(an ``/etc`` file from 2006) are summarised in one line under it instead of stretching
the axis. The second panel is the collection itself, seconds long: what the tool did,
the views that disagreed, custody. Dark text on white, plain shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .values import to_ns
from .words import html as _e
from .words import plural

COLOURS = {
    "host": "#4b5563",
    "logins": "#2563eb",
    "processes": "#9333ea",
    "persistence": "#be123c",
    "logs": "#0891b2",
    "files": "#16a34a",
    "findings": "#b45309",
    "collection": "#ea580c",
    "custody": "#111827",
    "errors": "#dc2626",
}
LABELS = {
    "host": "host (boot)",
    "logins": "logins",
    "processes": "suspicious processes",
    "persistence": "persistence changes",
    "logs": "logs and log gaps",
    "files": "recent file changes",
    "findings": "findings",
    "collection": "the tool's actions",
    "custody": "custody",
    "errors": "not collected",
}
INCIDENT_LANES = ("host", "logins", "processes", "persistence", "logs", "files", "findings")
COLLECTION_LANES = ("collection", "findings", "custody", "errors")
DAY_NS = 86400 * 1_000_000_000
WINDOW_DAYS = 7
WIDTH, LEFT, RIGHT, LANE_H, TOP = 1000, 150, 16, 40, 30
CHAR_W = 6.2  # about the width of one 11 px character, to keep labels apart
MAX_LABEL = 48  # characters of one label


def _fmt(ns: int, span: int) -> str:
    dt = datetime.fromtimestamp(ns / 1e9, UTC)
    if span > 3 * DAY_NS:
        return dt.strftime("%Y-%m-%d")
    if span > 3600 * 10**9:
        return dt.strftime("%m-%d %H:%M")
    if span > 10 * 10**9:
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%H:%M:%S.%f")[:-3]


def _short(text: str) -> str:
    """At most ``MAX_LABEL`` characters; of a path, its end (``modified: …/cron.d/x``)."""
    if len(text) <= MAX_LABEL:
        return text
    head, sep, tail = text.partition(": ")
    if sep and tail.startswith("/") and len(head) < MAX_LABEL // 2:
        return f"{head}: \u2026{tail[-(MAX_LABEL - len(head) - 3) :]}"
    return text[: MAX_LABEL - 1] + "\u2026"


class _Labels:
    """Places labels in two rows per lane (above and below the line) without overlaps;
    a label that finds no room is counted, and the table lists its event."""

    def __init__(self) -> None:
        self.ends: dict[tuple[int, int], float] = {}
        self.dropped = 0

    def place(self, lane: int, x: float, text: str) -> tuple[int, float, str] | None:
        width = len(text) * CHAR_W + 6
        anchor, x0 = ("start", x + 7) if x + 7 + width < WIDTH - RIGHT else ("end", x - 7)
        lo = x0 if anchor == "start" else x0 - width
        for row in (0, 1):
            if self.ends.get((lane, row), -1e9) < lo:
                self.ends[(lane, row)] = lo + width
                return row, x0, anchor
        self.dropped += 1
        return None


def _clusters(events: list[dict[str, Any]], x_of: Any) -> list[list[dict[str, Any]]]:
    """Notable events of one lane closer than 4 px, together (one dot, one label)."""
    out: list[list[dict[str, Any]]] = []
    for e in sorted(events, key=lambda e: int(e["time_ns"])):
        if out and x_of(e) - x_of(out[-1][-1]) < 4:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def _panel(
    title: str,
    events: list[dict[str, Any]],
    lanes: tuple[str, ...],
    lo: int,
    hi: int,
    y0: int,
    marks: list[tuple[int, str]],
) -> tuple[str, int]:
    used = [lane for lane in lanes if any(e["lane"] == lane for e in events)]
    height = TOP + LANE_H * len(used) + 34
    span = max(hi - lo, 1)
    plot = WIDTH - LEFT - RIGHT

    def x_of(e: dict[str, Any] | int) -> float:
        ns = e if isinstance(e, int) else int(e["time_ns"])
        return LEFT + plot * (min(max(ns, lo), hi) - lo) / span

    out = [
        f'<g transform="translate(0,{y0})">',
        f'<text x="4" y="16" class="pt">{_e(title)}</text>',
    ]
    bottom = TOP + LANE_H * len(used)
    for i, lane in enumerate(used):
        y = TOP + i * LANE_H + LANE_H // 2
        out.append(f'<text x="4" y="{y + 4}" class="ln">{_e(LABELS.get(lane, lane))}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#d1d5db"/>')
    for t in range(6):
        x = LEFT + plot * t / 5
        anchor = "start" if t == 0 else "end" if t == 5 else "middle"
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" class="tk" text-anchor="{anchor}">'
            f"{_fmt(lo + span * t // 5, span)}</text>"
        )
    for ns, label in marks:
        x = x_of(ns)
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#ea580c" '
            'stroke-dasharray="4 3"/>'
            f'<text x="{x - 3:.1f}" y="{TOP - 9}" class="mk" text-anchor="end">{_e(label)}</text>'
        )
    labels = _Labels()
    for i, lane in enumerate(used):
        y = TOP + i * LANE_H + LANE_H // 2
        mine = [e for e in events if e["lane"] == lane]
        for e in (e for e in mine if not e["notable"]):  # ordinary: a small grey dot
            out.append(f'<circle cx="{x_of(e):.1f}" cy="{y}" r="2.5" fill="#9ca3af"/>')
        for group in _clusters([e for e in mine if e["notable"]], x_of):
            x, first = x_of(group[0]), group[0]
            colour = COLOURS.get(lane, "#000")
            tip = f"{first['time']} {first['text']}"
            out.append(
                f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{colour}" fill-opacity="0.8" '
                f'stroke="#111" stroke-width="1"><title>{_e(tip)}</title></circle>'
            )
            more = f" (+{len(group) - 1})" if len(group) > 1 else ""
            text = _short(str(first["text"])) + more
            spot = labels.place(i, x, text)
            if spot is not None:
                row, lx, anchor = spot
                ly = y - 7 if row == 0 else y + 15
                out.append(
                    f'<text x="{lx:.1f}" y="{ly}" class="lb" text-anchor="{anchor}">'
                    f"{_e(text)}</text>"
                )
    if labels.dropped:
        height += 14
        out.append(
            f'<text x="{LEFT}" y="{bottom + 30}" class="tk">{plural(labels.dropped, "label")} '
            "left off for room: the table below lists every notable event</text>"
        )
    out.append("</g>")
    return "\n".join(out), height


def window(events: list[dict[str, Any]], start_ns: int, end_ns: int) -> tuple[int, int]:
    """The incident window: from the earliest notable host event within ``WINDOW_DAYS``
    of the collection (a day when there is none) to the collection's end."""
    floor = start_ns - WINDOW_DAYS * DAY_NS
    notable = [
        int(e["time_ns"])
        for e in events
        if e["notable"] and e["lane"] in INCIDENT_LANES and floor <= int(e["time_ns"]) < start_ns
    ]
    lo = min(notable, default=start_ns - DAY_NS)
    lo = min(lo, start_ns - 3600 * 10**9)  # at least an hour of context
    return lo - (end_ns - lo) // 50, end_ns + (end_ns - lo) // 50


def render(timeline: dict[str, Any], collection_start: str | None, end: str | None = None) -> str:
    events = timeline["events"]
    if not events:
        return "<p>No timed events.</p>"
    start = to_ns(collection_start) or int(events[-1]["time_ns"])
    stop = max(to_ns(end) or start, start + 1)
    lo, hi = window(events, start, stop)
    before = [e for e in events if int(e["time_ns"]) < start and e["lane"] in INCIDENT_LANES]
    inside = [e for e in before if int(e["time_ns"]) >= lo]
    older = [e for e in before if int(e["time_ns"]) < lo]
    during = [e for e in events if int(e["time_ns"]) >= start and e["lane"] in COLLECTION_LANES]
    parts, y = [], 0
    if inside:
        svg, h = _panel(
            "The incident window (host history before the collection)",
            inside,
            INCIDENT_LANES,
            lo,
            hi,
            y,
            [(start, "collection")],
        )
        parts.append(svg)
        y += h
    if older:
        first, last = older[0]["time"][:10], older[-1]["time"][:10]
        parts.append(
            f'<text x="4" y="{y + 10}" class="tk">Older: {plural(len(older), "event")} from '
            f"{_e(first)} to {_e(last)} (mostly file dates), not drawn; the table lists "
            "them.</text>"
        )
        y += 24
    if during:
        d_lo = min(int(e["time_ns"]) for e in during)
        d_hi = max(max(int(e["time_ns"]) for e in during), d_lo + 1)
        pad = (d_hi - d_lo) // 50
        svg, h = _panel(
            "The collection and after (what the tool did, custody)",
            during,
            COLLECTION_LANES,
            d_lo - pad,
            d_hi + pad,
            y + 10,
            [],
        )
        parts.append(svg)
        y += h + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" '
        f'viewBox="0 0 {WIDTH} {y}" role="img" aria-label="timeline">'
        "<style>.pt{font:bold 13px sans-serif}.ln{font:12px sans-serif;fill:#111}"
        ".tk{font:11px sans-serif;fill:#374151}.lb{font:11px sans-serif;fill:#111}"
        ".mk{font:bold 11px sans-serif;fill:#ea580c}</style>"
        '<rect width="100%" height="100%" fill="#fff"/>' + "\n".join(parts) + "</svg>"
    )
