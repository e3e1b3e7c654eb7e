"""The rows a run adds to its closing summary box and to ``--json``'s ``summary_rows``.

Collectors and the stage hooks (isolation, the watch) add rows through the one ``Summary``
a run carries (``CollectContext.summary``); the command line adds its own and prints them.
Rows keep the order they were added in, which is the order the run did things."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

SummaryRow = tuple[str, str]  # (label, value), e.g. ("Isolation", "IN FORCE (nftables)")


@dataclass
class Summary:
    rows: list[SummaryRow] = field(default_factory=list)
    # Views that disagreed or could not be read (hidden processes, a skewed clock): each
    # is also a "DEGRADED" row, and ``--json`` prints them as its ``degraded`` list.
    degraded: list[dict[str, str]] = field(default_factory=list)

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def degrade(self, view: str, severity: str, reason: str) -> None:
        self.degraded.append({"view": view, "severity": severity, "reason": reason})
        self.add(f"DEGRADED ({view})", f"{severity.upper()}: {reason}")

    def __iter__(self) -> Iterator[SummaryRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_json(self) -> list[list[str]]:
        """As ``--json`` prints it: a list of ``[label, value]`` pairs."""
        return [[label, value] for label, value in self.rows]
