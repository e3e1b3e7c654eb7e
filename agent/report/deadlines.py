"""The deadlines checklist: dates counted from when the incident was detected.

The duties live in a data file (``deadlines.toml``, or one given with ``--deadlines``),
so another jurisdiction is a few lines of TOML, not code. Everything produced here is
labelled as guidance, not legal advice."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifests.errors import UsageError

from .evidence import utc_text

DEFAULT_FILE = Path(__file__).with_name("deadlines.toml")
DISCLAIMER = (
    "Guidance, not legal advice: whether each duty applies, and from when it runs, "
    "depends on the facts and on counsel's reading of the law."
)
_H = 3600 * 1_000_000_000


class DeadlinesError(UsageError):
    """A deadlines file that cannot be used (exit 2); the message names the entry and
    field."""

    hint = "fix the --deadlines file, or leave --deadlines out for the built-in duties"


@dataclass
class Duty:
    id: str
    jurisdiction: str
    to: str
    what: str
    basis: str
    applies_if: str
    due_text: str
    due_hours: int | None = None
    earliest_hours: int | None = None


def load(path: Path | None = None) -> list[Duty]:
    source = path or DEFAULT_FILE
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise DeadlinesError(f"cannot read {source}: {e}") from e
    duties = []
    for n, entry in enumerate(data.get("deadline", []), 1):
        if not isinstance(entry, dict):
            raise DeadlinesError(f"{source}: deadline #{n} is not a table")
        for key in ("id", "jurisdiction", "to", "what"):
            if not isinstance(entry.get(key), str):
                raise DeadlinesError(f"{source}: deadline #{n} needs a text field {key!r}")
        hours = entry.get("due_hours")
        if "due_days" in entry:
            hours = entry["due_days"] * 24 if isinstance(entry["due_days"], int) else "bad"
        earliest = entry.get("earliest_days")
        if (
            hours is not None
            and not isinstance(hours, int)
            or (earliest is not None and not isinstance(earliest, int))
        ):
            raise DeadlinesError(f"{source}: deadline {entry['id']!r}: days and hours are integers")
        duties.append(
            Duty(
                id=entry["id"],
                jurisdiction=entry["jurisdiction"],
                to=entry["to"],
                what=entry["what"],
                basis=str(entry.get("basis", "")),
                applies_if=str(entry.get("applies_if", "")),
                due_text=str(entry.get("due_text", "")),
                due_hours=hours,
                earliest_hours=earliest * 24 if earliest is not None else None,
            )
        )
    if not duties:
        raise DeadlinesError(f"{source}: no [[deadline]] entries")
    return duties


def checklist(duties: list[Duty], detected_ns: int, now_ns: int) -> list[dict[str, Any]]:
    rows = []
    for d in duties:
        due_ns = detected_ns + d.due_hours * _H if d.due_hours is not None else None
        if due_ns is None:
            state = "no fixed date"
        elif now_ns > due_ns:
            state = f"PASSED {(now_ns - due_ns) // _H} h ago"
        else:
            state = f"{(due_ns - now_ns) // _H} h left"
        rows.append(
            {
                "id": d.id,
                "jurisdiction": d.jurisdiction,
                "to": d.to,
                "what": d.what,
                "basis": d.basis,
                "applies_if": d.applies_if,
                "due": utc_text(due_ns) if due_ns else None,
                "earliest": (
                    utc_text(detected_ns + d.earliest_hours * _H) if d.earliest_hours else None
                ),
                "due_text": d.due_text,
                "state_at_report_time": state,
                "done": False,
            }
        )
    return rows
