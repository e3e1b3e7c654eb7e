"""Who held the evidence, and what each holder signed: seals, transfers and the chain head
on the custody form, checked record by record as the journal streams past.

The collector's key (from the ``start`` record) signs until a ``transfer`` names a new
holder; the seal right after a transfer must be made by the new holder's key (optionally
preceded by the giver's ``handover`` countersignature). Checking stops at the first seal
or transfer that cannot be believed: nothing after it is signed by anyone who held the
evidence. Only what later checks need is kept (every seal's line hash, the first ``end``
and ``sums`` records), never a list of every record."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SignatureError
from .journal import HANDOVER, SEAL_FIELD, seal_message
from .signing import fingerprint_of, public_key_from_raw_b64, verify_signature

if TYPE_CHECKING:
    from .verify import VerificationResult

# Records after a pinned chain head that are named one by one; the rest are counted.
MAX_LISTED_AFTER_PIN = 50


@dataclass
class Holder:
    name: str
    fingerprint: str
    since: str
    seq: int
    note: str = ""
    # True when the previous holder also signed the handover (a 'handover' seal by the
    # giver's key right after the transfer), not only the receiver.
    cosigned: bool = False


@dataclass
class Seen:
    """A record kept for a later check: its seq and the fields it was kept for."""

    seq: int
    record: dict[str, Any]


def _transfer_disagrees(
    record: dict[str, Any], pending: Any, holder_key: Any, holder: Holder
) -> str | None:
    """Why a transfer record cannot be believed, or None.

    Only the new holder signs a transfer (the seal after it), so every holder the
    journal names must have signed before the next transfer, and what the record says
    about both sides must be what the chain says."""
    if pending is not None:
        return "follows a transfer that its new holder never sealed"
    try:
        key = public_key_from_raw_b64(record["public_key"])
    except (KeyError, TypeError, ValueError):
        return "has no usable key"
    if record.get("fingerprint") != fingerprint_of(key):
        return "names a fingerprint that is not its key's"
    if record.get("from") != fingerprint_of(holder_key) or record.get("from_name") not in (
        None,
        holder.name,
    ):
        return f"does not come from the holder at that point ({holder.name})"
    return None


def _describe(record: dict[str, Any]) -> str:
    """One line about a record appended after the pinned head, for the examiner."""
    kind = record.get("type")
    text = f"seq {record.get('seq')} {kind}"
    if kind == "transfer":
        text += f" to {record.get('to')!r}"
    elif kind == "seal":
        text += f" ({record.get('reason')}, signer {str(record.get('signer'))[:16]}...)"
    elif kind == "artifact":
        text += f" {record.get('path')}"
    elif kind == "end":
        text += f" ({record.get('status')})"
    return text


class CustodyCheck:
    """Fed every record in order (``feed``), then ``finish``; fills in the result's
    holders, seals, signer, sealed prefix and chain-head pin."""

    def __init__(self, result: VerificationResult, chain_pin: str | None = None) -> None:
        self.result = result
        self.chain_pin = chain_pin
        self.problems: list[str] = []  # appended to the result after the chain's own
        self.holder_key: Any = None
        self.pending: Any = None  # the new holder's key, until their seal
        self.sealed_through: int | None = None
        self.sealed_head: str | None = None
        self.seal_heads: dict[int, str] = {}  # seq -> line hash of each believed seal
        self.end: Seen | None = None
        self.sums: Seen | None = None
        self.last_seq: int | None = None
        self.started = False
        self.stopped = False  # a seal or transfer failed: nothing after it is checked
        self.pin_seq: int | None = None
        self.after_pin = 0

    # -- the stream ----------------------------------------------------------------

    def feed(self, record: dict[str, Any], head: str, admitted: bool = True) -> None:
        """One record and the hash of its line (the chain head once it is written);
        ``admitted``: it stands where such a record may (``verify_order``), so an ``end``
        or ``sums`` record appended after a transfer is not the collection's."""
        seq, kind = record["seq"], record.get("type")
        self.last_seq = seq
        self._pin(record, head)
        if admitted and kind == "end" and self.end is None:
            kept = ("status", "stopped_by", "counts")
            self.end = Seen(seq, {k: record[k] for k in kept if k in record})
        elif admitted and kind == "sums" and self.sums is None:
            self.sums = Seen(seq, {"sha256": record.get("sha256")})
        if seq == 0:
            self._start(record)
            return
        if self.stopped:
            return
        if kind == "transfer":
            self._transfer(record)
        elif kind == "seal":
            self._seal(record, head)

    def _start(self, start: dict[str, Any]) -> None:
        self.stopped = True  # until the start record proves usable
        if start.get("type") != "start":
            return
        result = self.result
        result.start = start
        self.started = True
        try:
            self.holder_key = public_key_from_raw_b64(start["signer"]["public_key"])
        except (KeyError, TypeError, ValueError) as e:
            self.problems.append(
                f"start record has no usable signer key ({e}): no seal can be checked, so "
                "nothing in this journal is vouched for (tampering or damage)"
            )
            return
        result.signer_fingerprint = fingerprint_of(self.holder_key)
        if start["signer"].get("fingerprint") != result.signer_fingerprint:
            self.problems.append(
                "start record's fingerprint does not match its key (tampering): compare "
                "the key's fingerprint shown above with the custody form"
            )
        result.holders.append(
            Holder(
                name=str(start.get("examiner") or "(collector, no examiner named)"),
                fingerprint=result.signer_fingerprint,
                since=str(start.get("time")),
                seq=0,
                note=str(start.get("note") or ""),
            )
        )
        self.stopped = False

    def _transfer(self, record: dict[str, Any]) -> None:
        holders = self.result.holders
        wrong = _transfer_disagrees(record, self.pending, self.holder_key, holders[-1])
        if wrong:
            self.problems.append(
                f"transfer at seq {record['seq']} {wrong}; nothing after it is believed "
                "(tampering: a custody record that the chain of holders does not support)"
            )
            self.stopped = True
            return
        self.pending = public_key_from_raw_b64(record["public_key"])
        holders.append(
            Holder(
                name=str(record.get("to")),
                fingerprint=fingerprint_of(self.pending),
                since=str(record.get("time")),
                seq=record["seq"],
                note=str(record.get("note") or ""),
            )
        )

    def _seal(self, record: dict[str, Any], head: str) -> None:
        seq = record["seq"]
        if self.pending is not None and record.get("reason") == HANDOVER:
            # The previous holder countersigns the transfer; the receiver seals next.
            if self._valid(record, self.holder_key, seq, head):
                self.result.holders[-1].cosigned = True
            return
        key = self.pending or self.holder_key
        if self._valid(record, key, seq, head):
            self.holder_key, self.pending = key, None

    def _valid(self, record: dict[str, Any], key: Any, seq: int, head: str) -> bool:
        """Check one seal against the key that must have made it; a good one extends
        the sealed prefix, a bad one ends all checking."""
        try:
            signature = base64.b64decode(record.get(SEAL_FIELD, ""), validate=True)
            if record.get("signer") != fingerprint_of(key):
                raise SignatureError("made by a key that does not hold the evidence")
            verify_signature(key, signature, seal_message(record))
        except (SignatureError, ValueError, TypeError) as e:
            self.problems.append(
                f"bad signature on seal at seq {seq}: {e}; nothing from it on is believed "
                "(tampering: the seal was changed, or made by a key never handed the evidence)"
            )
            self.stopped = True
            return False
        self.result.seals.append(
            {
                "seq": seq,
                "signer": record["signer"],
                "reason": record.get("reason"),
                "time": record.get("time"),
            }
        )
        self.sealed_through, self.sealed_head = seq, head
        self.seal_heads[seq] = head
        return True

    def _pin(self, record: dict[str, Any], head: str) -> None:
        """Find the pinned chain head; name what was appended after it."""
        if self.chain_pin is None:
            return
        if self.pin_seq is None:
            if head == self.chain_pin:
                self.pin_seq = record["seq"]
            return
        self.after_pin += 1
        if len(self.result.after_chain_pin) < MAX_LISTED_AFTER_PIN:
            self.result.after_chain_pin.append(_describe(record))

    # -- the end -------------------------------------------------------------------

    def finish(self) -> None:
        result = self.result
        if not self.started:
            self.problems.append(
                "journal does not begin with a 'start' record (tampering or damage): it holds "
                "the collector's key, so nothing in this journal can be checked"
            )
        elif not self.stopped and self.last_seq is not None:
            through, last = self.sealed_through, self.last_seq
            if through is None:
                self.problems.append(
                    "no valid seal: nothing in this journal is signed (a run killed before "
                    "its first seal, or tampering); none of it is evidence"
                )
            elif through < last:
                self.problems.append(
                    f"unsealed tail after seq {through}: {last - through} record(s) "
                    "are not covered by any signature (the run was interrupted, or they were "
                    "appended since): the files they name are 'unsealed', not evidence; what "
                    f"the seals up to seq {through} cover stands"
                )
        result.problems.extend(self.problems)
        result.sealed_through, result.sealed_head = self.sealed_through, self.sealed_head
        self._finish_pin()

    def _finish_pin(self) -> None:
        pin, result = self.chain_pin, self.result
        if pin is None:
            return
        through, at = self.sealed_through, self.pin_seq
        if at is not None and at == through:
            result.chain_pin = "matched"
            return
        result.chain_pin = "mismatch"
        if at is None:
            result.after_chain_pin.clear()
            result.problems.append(
                f"chain head mismatch: this journal never reaches {pin} (the head given), "
                f"so it is not the evidence it was written down for: another collection, "
                f"or an older copy of it (its last seal's head is {self.sealed_head})"
            )
            return
        more = self.after_pin - len(result.after_chain_pin)
        if more > 0:
            result.after_chain_pin.append(f"... and {more} more record(s)")
        if through is None or at > through:
            result.problems.append(
                f"chain head mismatch: the head given is that of seq {at}, which no valid "
                f"seal covers (last valid seal: seq {through})"
            )
        else:
            result.problems.append(
                f"chain head mismatch: the head given is that of seq {at}, not of the last "
                f"seal (seq {through}): {self.after_pin} record(s) were appended after it "
                f"({'; '.join(result.after_chain_pin[:3])}{'; ...' if self.after_pin > 3 else ''}"
                "); if they are transfers you expect, pin the newer head"
            )
