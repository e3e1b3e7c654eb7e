"""Files the journal does not vouch for, or vouches for and lacks: what a killed run was
writing in place (announced by a ``begin`` record, never journaled), what a finished run
gave up, and everything else present and unnamed (unexpected) or named and absent
(missing). Split from ``verify_files``, which hashes what the journal does name."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING, Any

from . import layout
from .verify_files import FileVerdict
from .verify_index import EvidenceIndex, text

if TYPE_CHECKING:
    from .verify import VerificationResult


class InPlaceWrites:
    """Artifacts written under their final name, announced by a ``begin`` record before
    their bytes: one file a record (``path``) where the sink cannot rename (an SFTP
    drop-box), a batch of small files a record (``paths``) on a local drive. Only those
    with no ``artifact`` record after it are kept: cut short by a killed run, or given up
    (``discarded``)."""

    def __init__(self) -> None:
        self.unfinished: dict[str, FileVerdict] = {}
        self._announced: dict[str, int] = {}  # unfinished path -> seq of its 'begin'

    def feed(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "begin":
            paths = record.get("paths", [record.get("path")])
            seq = record.get("seq")
            detail = (
                f"incomplete copy from a killed run (seq {seq}: announced, never journaled); "
                "nothing vouches for its bytes, so it is not evidence"
            )
            for path in paths if isinstance(paths, list) else ():
                if isinstance(path, str):
                    self.unfinished[path] = FileVerdict(path, "incomplete", detail)
                    self._announced[path] = seq if isinstance(seq, int) else -1
            return
        path = record.get("path")
        if not isinstance(path, str):
            return
        if kind == "artifact":
            self.unfinished.pop(path, None)
            self._announced.pop(path, None)
        elif kind == "discarded" and path in self.unfinished:
            detail = f"copy given up and left in place (seq {record.get('seq')}); not evidence"
            self.unfinished[path] = FileVerdict(path, "ok", detail)
            self._announced.pop(path, None)

    def settle(self, ended: bool) -> None:
        """Once the journal is read: if the run ended (a sealed ``end`` record), every
        announced copy it did not journal failed and was removed (its ``error`` record
        names the source), or was never made. Nothing of it can be in the directory, so a
        file under such a name was put there afterwards: unexpected, not incomplete."""
        if not ended:
            return
        for path, seq in self._announced.items():
            self.unfinished[path] = FileVerdict(
                path,
                "unexpected",
                f"file not recorded in the journal: announced at seq {seq}, but the run "
                "ended without keeping it (the copy failed), so someone else put it there",
            )
        self._announced.clear()


def _parents(paths: dict[str, FileVerdict], cache: list[set[str]]) -> set[str]:
    """Every directory (``"a/b/"``) above the incomplete files, worked out once."""
    if not cache:
        incomplete = (p for p, v in paths.items() if v.status == "incomplete")
        cache.append({p[: i + 1] for p in incomplete for i, c in enumerate(p) if c == "/"})
    return cache[0]


def _partial_after_end(base_seq: int | None) -> str:
    """Why a partial file in a finished run is not an incomplete copy: the run renames
    each copy it keeps and removes each it gives up before its ``end``, so a partial
    name left behind was made or renamed by someone else afterwards."""
    named = (
        f"the journaled file it is named after (seq {base_seq}) is missing"
        if base_seq is not None
        else "no journaled file has its name"
    )
    return (
        "partial copy ('%part') in a run that finished: the run renames or removes every "
        f"copy before it ends, so this was left or renamed here afterwards; {named}. It is "
        "not evidence: keep the directory as found and compare this file's SHA-256 with "
        "the journal's record on a copy"
    )


def missing_and_unexpected(
    index: EvidenceIndex, result: VerificationResult, in_place: dict[str, FileVerdict]
) -> None:
    """Journaled files that are not there; what is there that the journal does not name
    (a killed run's partial copy and run log said as what they are)."""
    ended = bool(result.ending)
    for raw, seq, has_partial in index.missing(partials_stand_in=not ended):
        detail = f"journal seq {seq}"
        if has_partial:
            detail += (
                f"; only a partial copy ({layout.partial_name(text(raw))!r}) is there, "
                "which the journal does not vouch for"
            )
        result.add_files([FileVerdict(text(raw), "missing", detail)])
    cache: list[set[str]] = []
    for raw, mode, base_seq in index.unaccounted():
        rel = text(raw)
        regular = stat.S_ISREG(mode)
        if rel in in_place and regular:
            verdict = in_place[rel]
        elif rel.endswith("/") and stat.S_ISDIR(mode) and rel in _parents(in_place, cache):
            # Made for an announced copy by a run killed before the file was created.
            detail = "empty directory made for an incomplete copy from a killed run"
            verdict = FileVerdict(rel, "incomplete", detail)
        elif rel.endswith(layout.PARTIAL_SUFFIX) and regular and ended:
            verdict = FileVerdict(rel, "unexpected", _partial_after_end(base_seq))
        elif rel.endswith(layout.PARTIAL_SUFFIX) and regular:
            # A copy a killed run was writing, or had journaled but not yet renamed.
            # Still a problem (the run did not finish), said as what it is.
            when = f"seq {base_seq}" if base_seq is not None else "being written when it stopped"
            verdict = FileVerdict(rel, "incomplete", f"incomplete copy from a killed run ({when})")
        elif rel == layout.LOG and not result.ending and regular:
            verdict = FileVerdict(
                rel,
                "incomplete",
                "run log of a run that did not finish (it is journaled when the run ends)",
            )
        else:
            kind = "symlink" if stat.S_ISLNK(mode) else "file"
            if rel.endswith("/"):
                kind = "empty directory"
            verdict = FileVerdict(rel, "unexpected", f"{kind} not recorded in the journal")
        result.add_files([verdict])
