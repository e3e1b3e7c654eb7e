"""The ``[triage]`` table of a profile: how deep the triage collectors go, as data.

Checked with the rest of the profile when it is loaded (collectors/logprofile.py), so a
typo is a usage error naming the key. Each key and its default is documented in
docs/triage.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manifests.errors import UsageError

_KEYS = {"timeline", "detection_window_days"}


@dataclass(frozen=True)
class TriageSettings:
    timeline: bool = False  # the whole-host bodyfile (collectors/timeline.py)
    # A persistence entry changed within this many days before collection is a finding.
    detection_window_days: int = 30


def parse_triage(where: str, table: Any) -> TriageSettings:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: [triage] must be a table")
    extra = sorted(set(table) - _KEYS)
    if extra:
        raise UsageError(
            f"{where}, [triage]: unknown key {extra[0]!r} (known: {', '.join(sorted(_KEYS))})"
        )
    timeline = table.get("timeline", False)
    if not isinstance(timeline, bool):
        raise UsageError(f"{where}, [triage]: 'timeline' must be true or false")
    days = table.get("detection_window_days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise UsageError(
            f"{where}, [triage]: 'detection_window_days' must be a whole number of days, 1 or more"
        )
    return TriageSettings(timeline=timeline, detection_window_days=days)
