"""A view that disagreed or could not be read is never quiet.

One call records it three ways: an ``event`` record (``event: "degraded"``) in the
journal, which ``verify`` and ``report`` read later; a ``DEGRADED`` row in the closing
box, which ``-q`` still prints; and an entry in ``--json``'s ``degraded`` list. It is
data, not a failure: the exit status stays what the contract says."""

from __future__ import annotations

from typing import Any

from .context import CollectContext
from .findings import record_finding

HIGH, MEDIUM = "high", "medium"


def degrade(
    ctx: CollectContext, collector: str, view: str, severity: str, reason: str, **details: Any
) -> None:
    ctx.journal.append(
        "event",
        event="degraded",
        collector=collector,
        view=view,
        severity=severity,
        reason=reason,
        **details,
    )
    ctx.summary.degrade(view, severity, reason)


def disagreement(
    ctx: CollectContext,
    collector: str,
    rule: str,
    view: str,
    path: bytes,
    message: str,
    artifact: str | None,
    **details: Any,
) -> None:
    """Two views of the same thing disagree (a hidden module, a hidden eBPF program):
    a HIGH finding linked to the evidence, and a HIGH degraded event."""
    record_finding(ctx, collector, rule, "HIGH", path, message, artifact=artifact, **details)
    degrade(ctx, collector, view, HIGH, message, **details)
