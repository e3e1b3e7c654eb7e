"""The timeline table as people read it: notable events first, then the rest in time
order with runs of ordinary process starts collapsed into one row each (a host starts
hundreds of processes a minute; the suspicious ones are among the notable events)."""

from __future__ import annotations

from typing import Any, NamedTuple

MAX_PIDS = 12  # pids named in a collapsed row


class Row(NamedTuple):
    time: str
    lane: str
    text: str
    ref: dict[str, Any]
    notable: bool


class Rows(NamedTuple):
    notable: list[Row]
    other: list[Row]
    notes: list[str]  # what was left out, in words

    @property
    def shown(self) -> list[Row]:
        return self.notable + self.other


def _row(e: dict[str, Any]) -> Row:
    return Row(e["time"], e["lane"], e["text"], e, bool(e["notable"]))


def _collapse(run: list[dict[str, Any]]) -> Row:
    if len(run) == 1:
        return _row(run[0])
    pids = [str(e["text"]).split(" ", 2)[1] for e in run if str(e["text"]).startswith("pid ")]
    named = ", ".join(pids[:MAX_PIDS]) + (", ..." if len(pids) > MAX_PIDS else "")
    span = (
        run[0]["time"]
        if run[0]["time"] == run[-1]["time"]
        else (f"{run[0]['time']} to {run[-1]['time']}")
    )
    return Row(
        span,
        "processes",
        f"{len(run)} ordinary process starts (pids {named})",
        {"artifact": run[0].get("artifact"), "seq": run[0].get("seq")},
        False,
    )


def rows(events: list[dict[str, Any]], limit: int) -> Rows:
    """At most ``limit`` rows: every notable event (up to the limit), then the others."""
    notable = [_row(e) for e in events if e["notable"]]
    other: list[Row] = []
    run: list[dict[str, Any]] = []
    for e in events:
        if e["notable"]:
            continue
        if e["lane"] == "processes":
            run.append(e)
            continue
        if run:
            other.append(_collapse(run))
            run = []
        other.append(_row(e))
    if run:
        other.append(_collapse(run))
    notes = []
    if len(notable) > limit:
        notes.append(f"{len(notable) - limit} more notable events are in the JSON report.")
    room = max(0, limit - len(notable))
    if len(other) > room:
        notes.append(f"{len(other) - room} more rows of other events are in the JSON report.")
    return Rows(notable[:limit], other[:room], notes)
