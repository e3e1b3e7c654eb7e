"""Custody transfers: appending to evidence that is already sealed.

``preserve custody`` hands the evidence to a new holder; ``preserve release --evidence``
records a release, handing over first when the releasing responder's key is not the one
holding the evidence. Both come here, so both refuse in the same way when the journal
changed after it was verified, and both produce records ``verify`` accepts: a
``transfer`` names the new holder and the seal after it is made with the new holder's
key (optionally preceded by the giver's ``handover`` countersignature)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .journal import HANDOVER
from .signing import Signer, public_key_to_raw_b64
from .verify import VerificationResult
from .writer import EvidenceWriter


@dataclass
class Handover:
    """Who receives the evidence, and why."""

    to: str
    note: str | None = None
    # The current holder's key, when at hand: it countersigns before the receiver seals.
    giver: Signer | None = None


@dataclass
class Appended:
    """What was added: the new chain head, and whether a transfer came first."""

    chain_head: str
    transferred: bool
    records: list[dict[str, Any]] = field(default_factory=list)


def append_under_custody(
    evidence_dir: str | os.PathLike[str],
    verified: VerificationResult,
    signer: Signer,
    reason: str,
    handover: Handover | None = None,
    records: list[tuple[str, dict[str, Any]]] | None = None,
) -> Appended:
    """Append ``records`` to verified evidence and seal them with ``signer``.

    A ``handover`` transfers first. Without one the signer must hold the evidence
    already: ``verify`` accepts no seal by a key that was never handed the evidence."""
    if not verified.ok or verified.chain_head is None:
        raise ValueError("only evidence that verifies can be appended to")
    holder = verified.holders[-1]
    if handover is None and holder.fingerprint != signer.fingerprint:
        raise ValueError("the signing key does not hold this evidence: hand it over first")
    state = (verified.records, verified.chain_head, verified.tail_bytes)
    writer = EvidenceWriter.continue_custody(evidence_dir, state, signer, verified.tail_file)
    appended: list[dict[str, Any]] = []
    try:
        with writer.journal.as_one_write():  # the transfer and its seal, or nothing
            if handover is not None:
                appended.append(
                    writer.append(
                        "transfer",
                        to=handover.to,
                        note=handover.note,
                        public_key=public_key_to_raw_b64(signer.public_key),
                        fingerprint=signer.fingerprint,
                        **{"from": holder.fingerprint},
                        from_name=holder.name,
                    )
                )
                if handover.giver is not None:
                    writer.seal(HANDOVER, handover.giver)
            for type_, fields in records or []:
                appended.append(writer.append(type_, **fields))
            writer.seal(reason, signer)
    finally:
        head = writer.finish()
    return Appended(head, handover is not None, appended)
