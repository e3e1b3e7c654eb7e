"""The timeline as an inline SVG: one lane per kind of event, time left to right.

Host history (boot, logins, file times) spans months while the collection spans seconds,
so there are two panels with their own linear scales: before the collection, and the
collection itself with everything after it (custody transfers). Plain shapes and text
only, dark on white, so it prints; every dot has a tooltip with its time and record."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

COLOURS = {
    "host": "#4b5563",
    "logins": "#2563eb",
    "processes": "#9333ea",
    "logs": "#0891b2",
    "files": "#16a34a",
    "collection": "#ea580c",
    "custody": "#111827",
    "errors": "#dc2626",
}
DAY_NS = 86400 * 1_000_000_000
WIDTH, LEFT, RIGHT, LANE_H, TOP = 1100, 110, 20, 26, 28


def _fmt(ns: int, span: int) -> str:
    dt = datetime.fromtimestamp(ns / 1e9, UTC)
    if span > 3 * 86400 * 1e9:
        return dt.strftime("%Y-%m-%d")
    if span > 3600 * 1e9:
        return dt.strftime("%m-%d %H:%M")
    if span > 10 * 1e9:
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%H:%M:%S.%f")[:-3]


def _panel(title: str, events: list[dict[str, Any]], lanes: list[str], y0: int) -> tuple[str, int]:
    used = [lane for lane in lanes if any(e["lane"] == lane for e in events)]
    height = TOP + LANE_H * len(used) + 30
    ns = [int(e["time_ns"]) for e in events]
    lo, hi = min(ns), max(ns)
    span = max(hi - lo, 1)
    plot = WIDTH - LEFT - RIGHT
    out = [
        f'<g transform="translate(0,{y0})">',
        f'<text x="4" y="16" class="pt">{escape(title)}</text>',
    ]
    for i, lane in enumerate(used):
        y = TOP + i * LANE_H + LANE_H // 2
        out.append(f'<text x="4" y="{y + 4}" class="ln">{lane}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#d1d5db"/>')
    bottom = TOP + LANE_H * len(used)
    for t in range(6):
        x = LEFT + plot * t / 5
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        anchor = "start" if t == 0 else "end" if t == 5 else "middle"
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" class="tk" text-anchor="{anchor}">'
            f"{_fmt(lo + span * t // 5, span)}</text>"
        )
    for e in events:
        if e["lane"] not in used:
            continue
        x = LEFT + plot * (int(e["time_ns"]) - lo) / span
        y = TOP + used.index(e["lane"]) * LANE_H + LANE_H // 2
        r, extra = (6, ' stroke="#dc2626" stroke-width="2"') if e["notable"] else (4, "")
        tip = f"{e['time']} {e['text']}" + (
            f" (seq {e['seq']})" if e.get("seq") is not None else ""
        )
        out.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="{r}" fill="{COLOURS.get(e["lane"], "#000")}"'
            f' fill-opacity="0.8"{extra}><title>{escape(tip)}</title></circle>'
        )
    out.append("</g>")
    return "\n".join(out), height


def render(timeline: dict[str, Any], collection_start: str | None) -> str:
    events = timeline["events"]
    if not events:
        return "<p>No timed events.</p>"
    from .evidence import to_ns

    split = to_ns(collection_start) or int(events[-1]["time_ns"])
    before = [e for e in events if int(e["time_ns"]) < split]
    during = [e for e in events if int(e["time_ns"]) >= split]
    day = [e for e in before if int(e["time_ns"]) >= split - DAY_NS]
    panels = [("Before the collection (host history)", before)]
    if day and len(day) < len(before):
        panels.append(("The 24 hours before the collection", day))
    panels.append(("The collection and after (what the tool did, custody)", during))
    parts, y = [], 0
    for title, group in panels:
        if group:
            svg, h = _panel(title, group, timeline["lanes"], y)
            parts.append(svg)
            y += h + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" '
        f'viewBox="0 0 {WIDTH} {y}" role="img" aria-label="timeline">'
        "<style>.pt{font:bold 13px sans-serif}.ln{font:12px sans-serif;fill:#111}"
        ".tk{font:11px sans-serif;fill:#374151}</style>"
        '<rect width="100%" height="100%" fill="#fff"/>' + "\n".join(parts) + "</svg>"
    )
