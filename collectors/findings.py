"""Findings: one journal record per fact the examiner should look at first, and a row in
the closing box per rule that fired.

A finding is an ``event`` record with ``event: "finding"``, the ``rule`` id, its
``severity`` (HIGH, MEDIUM, LOW), the host ``path`` it is about and, where the evidence of
it is stored, the ``artifact`` path; the report can link each to its record. The rules
are data (collectors/rules/triage.toml and the examiner's ``--rules`` files, loaded by
collectors/ruleset.py); ``apply_rules`` matches one fact against them, and each finding
also carries the rule's one-sentence ``why``. What a finding quotes of the fact (a history
line, a start-up file's line) has its likely secrets redacted (collectors/redact.py); the
rules judge the fact as it was."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from .context import CollectContext
from .pathmap import describe
from .redact import NOTE as REDACTED_NOTE
from .redact import redact_fields
from .ruleset import RuleSet, load_rules

SEVERITIES = ("HIGH", "MEDIUM", "LOW")
# Records per rule; past this the facts are only counted (the closing box says how many):
# a host with 50,000 scripts in /tmp must not make a 50,000-line journal.
RECORDS_PER_RULE = 200
_COUNTS = "findings"  # ctx.shared key: Counter of (severity, rule)
_RULES = "rules"  # ctx.shared key: the run's RuleSet when --rules gave none
_NOW = "triage-now"  # ctx.shared key: the one "now" every detection window counts back from
DAY_NS = 86_400 * 10**9


def rules_of(ctx: CollectContext) -> RuleSet:
    """The run's rules: loaded and checked by the command line (``Options.rules``), or
    the built-in file when a collector is driven without it."""
    if ctx.options.rules is not None:
        return ctx.options.rules
    with ctx.lock:  # loaded once, whichever thread asks first
        if _RULES not in ctx.shared:
            ctx.shared[_RULES] = load_rules()
        rules: RuleSet = ctx.shared[_RULES]
    return rules


def window_start(ctx: CollectContext, days: int) -> int:
    """The start (ns, host clock) of the detection window: ``days`` before the moment the
    first triage collector asked, the same for every collector of the run. File times are
    the host's, so the host's clock is the one to count with."""
    now: int = ctx.shared.setdefault(_NOW, time.time_ns())
    return now - days * DAY_NS


def apply_rules(
    ctx: CollectContext,
    collector: str,
    kind: str,
    fact: dict[str, Any],
    path: bytes,
    artifact: str | None = None,
    window: int | None = None,
) -> int:
    """Record a finding for each rule on ``kind`` facts that ``fact`` meets; returns how
    many. ``window`` (ns) sets the fact's ``in_window`` from its ``changed_ns``."""
    if window is not None and isinstance(fact.get("changed_ns"), int):
        fact["in_window"] = fact["changed_ns"] >= window
    fired = 0
    shown: dict[str, Any] | None = None  # the fact as the journal may quote it
    counts: Counter[tuple[str, str]] = ctx.shared.setdefault(_COUNTS, Counter())
    for rule in rules_of(ctx).for_fact(kind):
        if not rule.when.holds(fact):  # judged as typed, quoted redacted
            continue
        fired += 1
        severity = rule.severity_for(fact)
        if counts[(severity, rule.id)] >= RECORDS_PER_RULE:  # only counted: not quoted
            counts[(severity, rule.id)] += 1
            continue
        if shown is None:
            shown, hidden = redact_fields(fact)
            if hidden:
                shown["redacted"] = f"{hidden} {REDACTED_NOTE}"
        keep = (*rule.record, "line_no", "redacted")  # a line number points into the artifact
        values = {k: _journal_value(shown[k]) for k in keep if shown.get(k) is not None}
        record_finding(
            ctx, collector, rule.id, severity, path,
            rule.message.format_map(_Fields(shown)), artifact, why=rule.why, **values,
        )  # fmt: skip
    return fired


def _journal_value(value: Any) -> Any:
    """Nanosecond times as strings: canonical JSON keeps integers within 2**53."""
    return str(value) if isinstance(value, int) and abs(value) > 2**53 - 1 else value


class _Fields(dict[str, Any]):
    """A fact as a message template sees it: a missing field reads as ``-``, a list as
    its items, long values cut (an attacker's history line can be very long)."""

    def __missing__(self, key: str) -> str:
        return "-"

    def __getitem__(self, key: str) -> Any:
        value = super().get(key)
        if value is None:
            return "-"
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return text if len(text) <= 300 else text[:300] + "..."


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
    with ctx.lock:  # collectors alongside their stage count too: no increment lost
        counts: Counter[tuple[str, str]] = ctx.shared.setdefault(_COUNTS, Counter())
        counts[(severity, rule)] += 1
        capped = counts[(severity, rule)] > RECORDS_PER_RULE
    if capped:
        return
    # Every finding's quoted text, not only the rules' (a command line, a path in a URL).
    fields, hidden = redact_fields({**fields, "message": message})
    message = fields.pop("message")
    if hidden and "redacted" not in fields:
        fields["redacted"] = f"{hidden} {REDACTED_NOTE}"
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
    with ctx.lock:
        counts = Counter(ctx.shared.get(_COUNTS, Counter()))  # a copy: others still count
    for (severity, rule), n in sorted(counts.items()):
        if rule in rules:
            ctx.summary.add(f"Finding {severity}", f"{rule} ({n}, {collector})")
            if n > RECORDS_PER_RULE:
                ctx.journal.append(
                    "event", event="findings-capped", collector=collector, rule=rule,
                    severity=severity, total=n, recorded=RECORDS_PER_RULE,
                )  # fmt: skip
