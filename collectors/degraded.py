"""A view that disagreed or could not be read is never quiet.

One call records it three ways: an ``event`` record (``event: "degraded"``) in the
journal, which ``verify`` and ``report`` read later; a ``DEGRADED`` row in the closing
box, which ``-q`` still prints; and an entry in ``--json``'s ``degraded`` list. It is
data, not a failure: the exit status stays what the contract says."""

from __future__ import annotations

from typing import Any

from .context import CollectContext

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
