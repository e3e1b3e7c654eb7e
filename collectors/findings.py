"""Findings: one journal record per fact the examiner should look at first, and a row in
the closing box per rule that fired.

A finding is an ``event`` record with ``event: "finding"``, the ``rule`` id, its
``severity`` (HIGH, MEDIUM, LOW), the host ``path`` it is about and, where the evidence of
it is stored, the ``artifact`` path; the report can link each to its record. Rules that
are data (collectors/rules.toml) and rules built into a collector (a modified package
file) are recorded the same way."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .context import CollectContext
from .pathmap import describe

SEVERITIES = ("HIGH", "MEDIUM", "LOW")
# Records per rule; past this the facts are only counted (the closing box says how many):
# a host with 50,000 scripts in /tmp must not make a 50,000-line journal.
RECORDS_PER_RULE = 200
_COUNTS = "findings"  # ctx.shared key: Counter of (severity, rule)


def record_finding(
    ctx: CollectContext,
    collector: str,
    rule: str,
    severity: str,
    path: bytes,
    message: str,
    artifact: str | None = None,
    **fields: Any,
) -> None:
    assert severity in SEVERITIES, severity
    counts: Counter[tuple[str, str]] = ctx.shared.setdefault(_COUNTS, Counter())
    counts[(severity, rule)] += 1
    if counts[(severity, rule)] > RECORDS_PER_RULE:
        return
    ctx.journal.append(
        "event",
        event="finding",
        collector=collector,
        rule=rule,
        severity=severity,
        source=describe(path),
        message=message,
        **({"artifact": artifact} if artifact else {}),
        **fields,
    )


def summarize(ctx: CollectContext, collector: str, rules: set[str]) -> None:
    """One closing-box row for each of ``rules`` that fired: ``Finding HIGH: rule (n)``,
    and one ``findings-capped`` event for each rule past ``RECORDS_PER_RULE``."""
    counts: Counter[tuple[str, str]] = ctx.shared.get(_COUNTS, Counter())
    for (severity, rule), n in sorted(counts.items()):
        if rule in rules:
            ctx.summary.add(f"Finding {severity}", f"{rule} ({n}, {collector})")
            if n > RECORDS_PER_RULE:
                ctx.journal.append(
                    "event", event="findings-capped", collector=collector, rule=rule,
                    severity=severity, total=n, recorded=RECORDS_PER_RULE,
                )  # fmt: skip
