"""Reading and checking an evidence directory.

``verify_evidence`` never raises on bad evidence: it returns a ``VerificationResult`` that
lists every problem, file by file and for the chain, in hashdeep's spirit (``ok``,
``changed``, ``missing``, ``unexpected``); ``require_intact`` is the raising wrapper for
code that must not go on with evidence that fails (python-tuf's pattern). Nothing outside
the evidence directory is ever opened, whatever the journal says, symlinks inside it are
reported, not followed, and nothing is ever written inside it.

The work is split by concern: ``verify_custody`` (seals, holders, transfers, the pinned
chain head), ``verify_files`` (what is there against what the journal vouches for, and
hashing), ``verify_manifest`` (the directory's own files) and ``verify_index`` (the
on-disk index that keeps memory bounded on a million files). The journal is read once,
as a stream, by the one parser (``journal_reader``); ``iter_records`` streams the
verified records again for the report and the exports."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import layout
from .continuation import CONTINUATION, Continued, open_chain
from .errors import NotEvidenceError, VerificationError
from .journal_reader import ChainState, read_chain, records_of
from .verify_custody import CustodyCheck, Holder
from .verify_early import EarlyHashes
from .verify_files import (
    HASHED_RECORD_TYPES,
    ExpectedFiles,
    FileVerdict,
    compare_listing,
    hash_expected,
    load_present,
    walked_hasher,
)
from .verify_image import ImagePieces, check_unfinished
from .verify_index import EvidenceIndex
from .verify_manifest import check_own_files
from .verify_order import RecordOrder
from .verify_unaccounted import InPlaceWrites, missing_and_unexpected

__all__ = [
    "FileVerdict",
    "Holder",
    "VerificationResult",
    "require_intact",
    "verify_evidence",
]

# Problem verdicts kept one by one; beyond, a hostile directory of a million planted
# files is counted, not listed (each verdict costs memory until the result is dropped).
MAX_LISTED_FILE_PROBLEMS = 100_000
# Names whose presence makes a directory evidence (damaged, perhaps), not just any folder.
EVIDENCE_NAMES = (
    layout.JOURNAL,
    layout.MANIFEST,
    layout.MANIFEST_SIG,
    layout.SIGNER_PUB,
    layout.SUMS,
    layout.ARTIFACTS,
)


MAX_DEGRADED = 100  # degraded-view records listed by verify (all are counted)


@dataclass
class VerificationResult:
    evidence_dir: str
    problems: list[str] = field(default_factory=list)
    # Only files with a problem are kept; the ones that are ok are counted.
    file_problems: list[FileVerdict] = field(default_factory=list)
    files_ok: int = 0
    files_unlisted: int = 0  # problems beyond MAX_LISTED_FILE_PROBLEMS, counted only
    holders: list[Holder] = field(default_factory=list)
    seals: list[dict[str, Any]] = field(default_factory=list)
    signer_fingerprint: str | None = None
    pin: str | None = None  # "matched", "mismatch" or None when no pin was given
    # The chain head from the custody form against the last seal's: the same three values.
    chain_pin: str | None = None
    after_chain_pin: list[str] = field(default_factory=list)  # records after the pinned head
    records: int = 0
    sealed_through: int | None = None
    sealed_head: str | None = None  # hash of the last valid seal's line
    chain_head: str | None = None  # hash of the last line
    complete: bool = False
    start: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    journal_bytes: int = 0  # of the chain: custody.jsonl's, and its continuation's if any
    journal_path: str | None = None
    # The file the chain ends in (the continuation, when there is one) and the bytes it
    # held when verified: where a custody transfer is appended, and what it must still be.
    tail_file: str = layout.JOURNAL
    tail_bytes: int = 0
    # How the collection ended, from its signed 'end' record: status, counts, stopped_by.
    ending: dict[str, Any] = field(default_factory=dict)
    # Worth saying, not a failure (a renamed directory).
    notes: list[str] = field(default_factory=list)
    pieces_checked: int = 0  # disk image pieces (verify_image), and how many matched
    pieces_ok: int = 0

    # Views the collection found disagreeing or unreadable (``event: degraded`` records):
    # {seq, view, severity, reason}, the first MAX_DEGRADED; ``degraded_count`` counts all.
    degraded: list[dict[str, Any]] = field(default_factory=list)
    degraded_count: int = 0

    def add_degraded(self, record: dict[str, Any]) -> None:
        """Keep what ``verify`` says of a degraded view (bounded, clipped)."""
        self.degraded_count += 1
        if len(self.degraded) < MAX_DEGRADED:
            self.degraded.append(
                {
                    "seq": record.get("seq"),
                    "view": str(record.get("view"))[:100],
                    "severity": str(record.get("severity"))[:20],
                    "reason": str(record.get("reason"))[:500],
                }
            )

    @property
    def how_it_ended(self) -> str:
        """In words: complete, interrupted (by what), stopped early, or not finished."""
        if not self.ending:
            return "not finished (no sealed 'end' record: the run was killed or is running)"
        status = str(self.ending.get("status") or "?")
        by = self.ending.get("stopped_by")
        counts = self.ending.get("counts") or {}
        text = f"collection {status}" + (f" by {by}" if by else "")
        failed = counts.get("failed") if isinstance(counts, dict) else None
        if isinstance(failed, int) and failed:
            text += f", {failed} item{'s' if failed != 1 else ''} failed (each recorded)"
        return text

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """The records this verification read, whole, streamed again from the journal by
        the same parser; raises ``JournalChangedError`` if the journal changed since."""
        if self.journal_path is None or not self.records:
            return iter(())
        return self._records(self.journal_path, self.records - 1, self.chain_head)

    @staticmethod
    def _records(path: str, through: int, head: str | None) -> Iterator[dict[str, Any]]:
        with open_chain(path, [], []) as stream:  # with its continuation, as verified
            yield from records_of(stream, path, through, head, own=True)

    def add_files(self, verdicts: Iterable[FileVerdict]) -> None:
        for verdict in verdicts:
            if verdict.status == "ok":
                self.files_ok += 1
            elif len(self.file_problems) < MAX_LISTED_FILE_PROBLEMS:
                self.file_problems.append(verdict)
            else:
                self.files_unlisted += 1

    @property
    def files_checked(self) -> int:
        return self.files_ok + len(self.file_problems) + self.files_unlisted

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and not self.file_problems
            and self.pin != "mismatch"
            and self.chain_pin != "mismatch"
        )

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "evidence_dir": self.evidence_dir,
            "status": "intact" if self.ok else "FAILED",
            "problems": self.problems,
            "files": {
                "checked": self.files_checked,
                "ok": self.files_ok,
                "problems": [f.__dict__ for f in self.file_problems],
            },
            "image_pieces": {"checked": self.pieces_checked, "ok": self.pieces_ok},
            "signer_fingerprint": self.signer_fingerprint,
            "pin": self.pin,
            "chain_pin": self.chain_pin,
            "after_chain_pin": self.after_chain_pin,
            "holders": [h.__dict__ for h in self.holders],
            "seals": self.seals,
            "records": self.records,
            "sealed_through_seq": self.sealed_through,
            "sealed_head": self.sealed_head,
            "chain_head": self.chain_head,
            "complete": self.complete,
            "counts": self.counts,
            "collection": {**self.ending, "summary": self.how_it_ended},
            "notes": self.notes,
            "degraded": self.degraded,
            "degraded_count": self.degraded_count,
        }


def _journal_problem(root: Path) -> str | None:
    """Why the journal cannot be read, or None when it is a regular file.

    A directory that holds none of the evidence files is not evidence at all (exit 2);
    one that lost its journal is evidence that was tampered with (exit 1)."""
    if not root.is_dir():
        raise NotEvidenceError(f"{root} is not an evidence directory (not a directory)")
    try:
        st = os.lstat(root / layout.JOURNAL)
    except FileNotFoundError:
        if not any(os.path.lexists(root / name) for name in EVIDENCE_NAMES):
            names = ", ".join(EVIDENCE_NAMES[:-1]) + f" or {layout.ARTIFACTS}/"
            raise NotEvidenceError(f"{root} is not an evidence directory (no {names})") from None
        return (
            f"journal missing: {layout.JOURNAL} was deleted or moved, so nothing in this "
            "directory can be checked (the signatures and every hash are in it); get the "
            "evidence again from another copy (the kit's drive, the evidence server)"
        )
    except OSError as e:
        return f"journal cannot be examined: {e.strerror}"
    if stat.S_ISREG(st.st_mode):
        return None
    kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
    return (
        f"journal replaced: {layout.JOURNAL} is {kind}; it was not read (tampering): get "
        "the evidence again from another copy"
    )


def _read_journal(
    path: Path,
    result: VerificationResult,
    custody: CustodyCheck,
    expected: ExpectedFiles,
    in_place: InPlaceWrites,
    pieces: ImagePieces,
    early: EarlyHashes,
) -> None:
    """One pass over the journal: every line parsed and chain-checked (stopping at the
    first break), each record handed to the custody and file checks, none kept."""
    state, continued, order = ChainState(), Continued(), RecordOrder()
    try:
        with open_chain(path, result.notes, result.problems, continued) as stream:
            order.continued_seq = continued.seq
            for record in read_chain(stream, state):
                admitted = order.admits(record)
                custody.feed(record, state.head, admitted)
                if not admitted:
                    continue  # out of place: reported, and vouches for nothing
                in_place.feed(record)
                pieces.feed(record)
                if pieces.by_part:
                    early.abandon()  # image files: hashed by piece, by this process
                if record.get("type") == "event" and record.get("event") == "degraded":
                    result.add_degraded(record)
                if record.get("type") in HASHED_RECORD_TYPES:
                    expected.add(record)
    except OSError as e:
        state.problem = state.problem or (
            f"journal cannot be read: {e.strerror}; check the drive and permissions, then "
            "verify again"
        )
    expected.flush()
    if state.problem:
        result.problems.append(state.problem)
    result.records = state.records
    result.chain_head = state.head if state.records else None
    result.journal_bytes = result.tail_bytes = state.bytes_read
    if continued.seq is not None:
        result.tail_file = CONTINUATION
        result.tail_bytes = state.bytes_read - continued.journal_bytes
    result.journal_path = os.fspath(path)
    custody.finish()
    result.problems.extend(order.finish())
    result.problems.extend(expected.problems)


def _note_renamed(root: Path, result: VerificationResult) -> None:
    """A directory verified under another name than it was created with: fine (a copy
    for the lab, a renamed folder), but said, since an older collection of the same host
    renamed to the newer one's name would look the same; the chain head tells them apart."""
    recorded = result.start.get("evidence_dir")
    if not isinstance(recorded, str) or not recorded:
        return
    created = re.split(r"[\\/]", recorded.rstrip("/\\"))[-1]
    actual = os.path.basename(os.path.realpath(root))
    if created and created != actual:
        result.notes.append(
            f"this directory is named {actual!r} but was created as {created!r} "
            f"({recorded}): a renamed or copied directory verifies the same, so compare "
            "the chain head with the custody form (--chain-head)"
        )


def verify_evidence(
    evidence_dir: str | os.PathLike[str],
    pin_fingerprint: str | None = None,
    workers: int | None = None,
    *,
    chain_head: str | None = None,
) -> VerificationResult:
    """Check everything; ``pin_fingerprint`` and ``chain_head`` are the collector's key
    and the chain head from the custody form, when given. Raises ``NotEvidenceError``
    only for a path that holds none of the evidence files."""
    root = Path(evidence_dir)
    problem = _journal_problem(root)
    result = VerificationResult(evidence_dir=str(root))
    if problem:
        result.problems.append(problem)
        return result
    with EvidenceIndex(root) as index, EarlyHashes(root) as early:
        # The walk first, so that the big files are hashed by a child (verify_early)
        # while this process reads the journal.
        own, walk_errors = load_present(root, index, early)
        early.start(walked_hasher(early.root_fd))
        custody = CustodyCheck(result, chain_head.lower() if chain_head else None)
        in_place, pieces = InPlaceWrites(), ImagePieces()
        expected = ExpectedFiles(index)
        _read_journal(root / layout.JOURNAL, result, custody, expected, in_place, pieces, early)
        result.problems.extend(walk_errors)
        if check_own_files(root, own, custody, result):
            compare_listing(root, index, result)
        hash_expected(root, index, result, workers or os.cpu_count() or 2, pieces, early)
        in_place.settle(bool(result.ending))
        missing_and_unexpected(index, result, in_place.unfinished)
        check_unfinished(root, pieces, result, bytearray(1024 * 1024))
    result.problems.extend(pieces.problems)
    result.pieces_checked, result.pieces_ok = pieces.checked, pieces.ok
    if result.files_unlisted:
        result.problems.append(
            f"{result.files_unlisted} more file problem(s) not listed (only the first "
            f"{MAX_LISTED_FILE_PROBLEMS} are)"
        )
    _note_renamed(root, result)
    if pin_fingerprint and result.signer_fingerprint:
        result.pin = "matched" if pin_fingerprint == result.signer_fingerprint else "mismatch"
        if result.pin == "mismatch":
            result.problems.append(
                f"signer mismatch: signed by {result.signer_fingerprint}, "
                f"expected {pin_fingerprint}: not the collection the custody form names, or "
                "re-signed wholesale by someone else (tampering)"
            )
    return result


def require_intact(
    evidence_dir: str | os.PathLike[str],
    pin_fingerprint: str | None = None,
    workers: int | None = None,
    *,
    chain_head: str | None = None,
) -> VerificationResult:
    """``verify_evidence``, raising ``VerificationError`` unless the evidence is intact:
    for code that must not go on with evidence that fails."""
    result = verify_evidence(evidence_dir, pin_fingerprint, workers, chain_head=chain_head)
    if not result.ok:
        first = (result.problems or [f"{v.status}: {v.path}" for v in result.file_problems])[0]
        count = len(result.problems) + len(result.file_problems) + result.files_unlisted
        raise VerificationError(
            f"{evidence_dir} does not verify ({count} problem(s); first: {first})",
            hint=f"run 'verify {evidence_dir}' for every problem",
        )
    return result
