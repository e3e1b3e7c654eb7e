"""Which records may stand where in the chain, whoever sealed them.

A seal proves who appended a record, not that the record belongs there. After the
collection's ``end`` record, and after any custody ``transfer``, the collecting run writes
nothing more: what follows is custody (``transfer``, seals, ``action`` records of a
release). Transfers are signed by their receiver alone (docs/threat-model.md), so anyone
can append one to a key of their own; a ``begin``, ``discarded`` or ``artifact`` record
behind it would otherwise vouch for a file they put in the directory. Such records are
reported and not believed: what they name stays unexpected. Likewise a ``continued``
record stands only where ``custody.continued.jsonl`` joins on, before any transfer."""

from __future__ import annotations

from typing import Any

from .continuation import CONTINUATION, CONTINUED

# What may follow the collection's end (or a transfer): custody, never collection.
AFTER_END = frozenset({"seal", "transfer", "action", CONTINUED})
MAX_LISTED = 20  # records out of place named one by one; the rest are counted


class RecordOrder:
    """Fed every record in chain order; ``admits`` says whether the file checks may
    believe it. Problems (tampering) go to ``problems``."""

    def __init__(self) -> None:
        self.continued_seq: int | None = None  # where the continuation joins on, if any
        self.problems: list[str] = []
        self._closed: str | None = None  # what closed the collection, in words
        self._transferred = False
        self._refused = 0

    def admits(self, record: dict[str, Any]) -> bool:
        kind, seq = record.get("type"), record["seq"]
        if kind == CONTINUED:
            if seq != self.continued_seq:
                return self._refuse(
                    f"tampering: a 'continued' record at seq {seq} is in custody.jsonl; the "
                    f"run writes it only as the first line of {CONTINUATION}"
                )
            if self._transferred:
                return self._refuse(
                    f"tampering: the continuation (seq {seq}) comes after a custody transfer; "
                    "the collecting run writes it, before any transfer"
                )
            return True
        if self._closed is not None and kind not in AFTER_END:
            return self._refuse(
                f"tampering: record seq {seq} ('{str(kind)[:40]}') comes after {self._closed}, "
                "where only custody transfers, seals and release actions are written: it was "
                "added later, and no file it names is evidence"
            )
        if kind == "end" and self._closed is None:
            self._closed = f"the collection's end (seq {seq})"
        elif kind == "transfer":
            self._transferred = True
            if self._closed is None:
                self._closed = f"a custody transfer (seq {seq}) before the collection ended"
        return True

    def _refuse(self, problem: str) -> bool:
        self._refused += 1
        if self._refused <= MAX_LISTED:
            self.problems.append(problem)
        return False

    def finish(self) -> list[str]:
        """The problems, with a count of those not listed."""
        if self._refused > MAX_LISTED:
            self.problems.append(
                f"... and {self._refused - MAX_LISTED} more record(s) out of place (tampering)"
            )
        return self.problems
