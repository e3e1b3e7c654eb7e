"""Findings: what in the evidence deserves a person's attention first.

Each finding names the stored artifact and the journal ``seq`` of the record that vouches
for it, so whoever reads the report can go from a sentence to the bytes and check them.
Findings are hints for where to look, not verdicts; where the evidence needed for a
category was not collected, the category says so instead of staying silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .evidence import utc_text

WRITABLE_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/dev/mqueue/")
# Listening ports that are ordinary on servers; anything else is called out. Extend with
# ``preserve report --expect-port``.
EXPECTED_PORTS = frozenset(
    {22, 25, 53, 67, 68, 80, 123, 143, 443, 465, 546, 587, 631, 993, 995, 5353}
)
RECENT_DAYS = 7
MAX_LISTED = 50
HIGH, MEDIUM, LOW, INFO = "high", "medium", "low", "info"
SEVERITY_ORDER = {HIGH: 0, MEDIUM: 1, LOW: 2, INFO: 3}
# Why a category matters, in one sentence, for findings that do not carry their own.
WHY = {
    "processes": "A program that hides its file or runs from a scratch directory is how "
    "backdoors and cryptominers usually run.",
    "listening": "A port nobody expects to be open may be a backdoor waiting for its owner.",
    "connections": "A connection to an outside address may be the intruder's control "
    "channel or data leaving the host.",
    "logins": "Who logged in, and from where, tells how the intruder got in and which "
    "accounts to reset.",
    "files": "Files changed shortly before detection show what the intruder touched.",
    "isolation": "Whether the host is cut off decides whether the intruder can still reach it.",
    "actions": "Everything the tool changed on the host is listed, so nothing it did is "
    "mistaken for the intruder's work.",
    "collection": "What could not be collected is missing from the evidence and may need "
    "collecting by other means.",
    "degraded": "The tool's views of the host disagreed: something on the host may be "
    "hiding from ordinary tools, so treat the host as hostile.",
}


@dataclass
class Finding:
    category: str
    severity: str
    title: str
    refs: list[dict[str, Any]]
    details: list[str] = field(default_factory=list)
    time_ns: int | None = None
    why: str | None = None  # why it matters, in one sentence; else the category's
    degraded: bool = False  # a view that disagreed: listed first, whatever the severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "severity": self.severity,
            "title": self.title,
            "why": self.why or WHY.get(self.category, ""),
            "degraded": self.degraded,
            "details": self.details,
            "time": utc_text(self.time_ns) if self.time_ns else None,
            "refs": self.refs,
        }


@dataclass
class Findings:
    items: list[Finding] = field(default_factory=list)
    # category -> why it could not be assessed ("not collected: ...")
    gaps: dict[str, str] = field(default_factory=dict)
    logins: list[dict[str, Any]] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.items.append(finding)

    def sorted(self) -> list[Finding]:
        return sorted(
            self.items,
            key=lambda f: (not f.degraded, SEVERITY_ORDER.get(f.severity, 9), f.category),
        )


def to_year(ns: Any) -> int:
    try:
        return datetime.fromtimestamp(int(ns) // 1_000_000_000, UTC).year
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC).year
