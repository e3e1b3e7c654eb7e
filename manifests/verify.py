"""Reading and checking an evidence directory.

``verify_evidence`` never raises on bad evidence: it returns a ``VerificationResult`` that
lists every problem, file by file and for the chain, in hashdeep's spirit (``ok``,
``changed``, ``missing``, ``unexpected``). Nothing outside the evidence directory is ever
opened, whatever the journal says, and symlinks inside it are reported, not followed.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import canonical, layout, treewalk
from .digest import sha256_bytes, sha256_fd, sha256_path_nofollow
from .errors import KeyLoadError, NotEvidenceError, SignatureError
from .journal import HANDOVER, SEAL_FIELD, seal_message
from .journal_reader import ChainState, iter_records, open_journal, read_chain
from .signing import (
    fingerprint_of,
    load_public_key_pem,
    public_key_from_raw_b64,
    verify_signature,
)
from .sums import compare_sums, parse_sums

HASHED_RECORD_TYPES = ("artifact",)
_ARTIFACT_KEYS = ("seq", "type", "path", "size", "sha256")
_BATCH = 64
# Records that checking reads beyond their seq and type; the rest are not kept in memory.
_KEPT_WHOLE = ("start", "transfer", "seal", "sums", "end", "begin", "discarded")
# Bounds on what is read into memory; real files are far smaller.
MAX_SMALL_FILE = 1024 * 1024  # manifest.json, its signature, signer.pub


@dataclass
class FileVerdict:
    path: str
    status: str  # ok | changed | missing | unexpected
    detail: str = ""


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
class VerificationResult:
    evidence_dir: str
    problems: list[str] = field(default_factory=list)
    files: list[FileVerdict] = field(default_factory=list)
    holders: list[Holder] = field(default_factory=list)
    seals: list[dict[str, Any]] = field(default_factory=list)
    signer_fingerprint: str | None = None
    pin: str | None = None  # "matched", "mismatch" or None when no pin was given
    records: int = 0
    sealed_through: int | None = None
    chain_head: str | None = None
    complete: bool = False
    start: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    journal_bytes: int = 0
    journal_path: str | None = None
    # How the collection ended, from its signed 'end' record: status, counts, stopped_by.
    ending: dict[str, Any] = field(default_factory=dict)

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
        return iter_records(self.journal_path, self.records - 1, self.chain_head)

    @property
    def file_problems(self) -> list[FileVerdict]:
        return [f for f in self.files if f.status != "ok"]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.file_problems and self.pin != "mismatch"

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "evidence_dir": self.evidence_dir,
            "status": "intact" if self.ok else "FAILED",
            "problems": self.problems,
            "files": {
                "checked": len(self.files),
                "ok": sum(f.status == "ok" for f in self.files),
                "problems": [f.__dict__ for f in self.file_problems],
            },
            "signer_fingerprint": self.signer_fingerprint,
            "pin": self.pin,
            "holders": [h.__dict__ for h in self.holders],
            "seals": self.seals,
            "records": self.records,
            "sealed_through_seq": self.sealed_through,
            "chain_head": self.chain_head,
            "complete": self.complete,
            "counts": self.counts,
            "collection": {**self.ending, "summary": self.how_it_ended},
        }


def _read_journal(path: Path, result: VerificationResult) -> list[dict[str, Any]]:
    """Parse and chain-check every line (``journal_reader``); stop at the first break.

    Only what checking needs is kept: a 20,000-file journal must not cost 100s of MB."""
    records: list[dict[str, Any]] = []
    state = ChainState()
    with open_journal(path) as stream:
        for record in read_chain(stream, state):
            if record.get("type") in HASHED_RECORD_TYPES:
                record = {k: record.get(k) for k in _ARTIFACT_KEYS}
            elif record.get("type") not in _KEPT_WHOLE:
                record = {"seq": record["seq"], "type": record.get("type")}
            records.append(record)
    if state.problem:
        result.problems.append(state.problem)
    result.chain_head = state.head if records else None
    result.journal_bytes = state.bytes_read
    result.journal_path = os.fspath(path)
    return records


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


def _seal_valid(record: dict[str, Any], key: Any, seq: int, result: VerificationResult) -> bool:
    try:
        signature = base64.b64decode(record.get(SEAL_FIELD, ""), validate=True)
        if record.get("signer") != fingerprint_of(key):
            raise SignatureError("made by a key that does not hold the evidence")
        verify_signature(key, signature, seal_message(record))
    except (SignatureError, ValueError, TypeError) as e:
        result.problems.append(f"bad signature on seal at seq {seq}: {e}")
        return False
    result.seals.append(
        {
            "seq": seq,
            "signer": record["signer"],
            "reason": record.get("reason"),
            "time": record.get("time"),
        }
    )
    return True


def _check_seals(records: list[dict[str, Any]], result: VerificationResult) -> int | None:
    """Check every seal against the holder of the evidence at that point.

    The collector's key (from the ``start`` record) signs until a ``transfer`` names a new
    holder; the seal right after a transfer must be made by the new holder's key."""
    if not records or records[0].get("type") != "start":
        result.problems.append("journal does not begin with a 'start' record")
        return None
    start = records[0]
    result.start = start
    try:
        holder_key = public_key_from_raw_b64(start["signer"]["public_key"])
    except (KeyError, TypeError, ValueError) as e:
        result.problems.append(f"start record has no usable signer key: {e}")
        return None
    result.signer_fingerprint = fingerprint_of(holder_key)
    if start["signer"].get("fingerprint") != result.signer_fingerprint:
        result.problems.append("start record's fingerprint does not match its key")
    result.holders.append(
        Holder(
            name=str(start.get("examiner") or "(collector, no examiner named)"),
            fingerprint=result.signer_fingerprint,
            since=str(start.get("time")),
            seq=0,
            note=str(start.get("note") or ""),
        )
    )
    pending = None
    sealed_through = None
    for record in records:
        kind = record.get("type")
        if kind == "transfer":
            wrong = _transfer_disagrees(record, pending, holder_key, result.holders[-1])
            if wrong:
                result.problems.append(f"transfer at seq {record['seq']} {wrong}")
                return sealed_through
            pending = public_key_from_raw_b64(record["public_key"])
            result.holders.append(
                Holder(
                    name=str(record.get("to")),
                    fingerprint=fingerprint_of(pending),
                    since=str(record.get("time")),
                    seq=record["seq"],
                    note=str(record.get("note") or ""),
                )
            )
        elif kind == "seal":
            seq = record["seq"]
            giver = holder_key if pending is not None else None
            if giver is not None and record.get("reason") == HANDOVER:
                # The previous holder countersigns the transfer; the receiver seals next.
                if not _seal_valid(record, giver, seq, result):
                    return sealed_through
                result.holders[-1].cosigned = True
                sealed_through = seq
                continue
            key = pending or holder_key
            if not _seal_valid(record, key, seq, result):
                return sealed_through
            holder_key, pending = key, None
            sealed_through = seq
    last = records[-1]["seq"]
    if sealed_through is None:
        result.problems.append("no valid seal: nothing in this journal is signed")
    elif sealed_through < last:
        result.problems.append(
            f"unsealed tail after seq {sealed_through}: {last - sealed_through} record(s) "
            "are not covered by any signature (the run was interrupted)"
        )
    return sealed_through


def _expected_files(
    records: list[dict[str, Any]], sealed_through: int | None, result: VerificationResult
) -> dict[str, dict[str, Any]]:
    """Map every stored path the journal vouches for to its record."""
    expected: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("type") not in HASHED_RECORD_TYPES:
            continue
        path = record.get("path")
        if (
            not isinstance(path, str)
            or not layout.is_safe_relpath(path)
            or not (path.startswith(layout.ARTIFACTS + "/") or path == layout.LOG)
        ):
            result.problems.append(
                f"tampering: record seq {record.get('seq')} names a path outside the "
                f"evidence directory ({path!r}); it was not opened"
            )
            continue
        size, digest = record.get("size"), record.get("sha256")
        if type(size) is not int or size < 0 or not isinstance(digest, str):
            result.problems.append(
                f"tampering: record seq {record.get('seq')} has no valid size and SHA-256"
            )
            continue
        if path in expected:
            result.problems.append(f"record seq {record['seq']} repeats the path {path!r}")
        if sealed_through is not None and record["seq"] <= sealed_through:
            expected[path] = record
        else:
            expected[path] = {**record, "_unsealed": True}
    return expected


def _read_small(path: Path) -> bytes:
    """A file that is small when genuine; a hostile one must not fill memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_SMALL_FILE + 1)
    if len(data) > MAX_SMALL_FILE:
        raise ValueError(f"larger than {MAX_SMALL_FILE} bytes")
    return data


def _walk(root: Path, errors: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Every non-directory entry under ``root``, relative, without following symlinks,
    and every empty directory (as ``"rel/"``): the one walker, at any depth.

    What cannot be listed or examined goes into ``errors``: it must fail verification,
    not be silently left out."""
    top = os.fsencode(os.path.realpath(root))  # the evidence directory the user named

    def failed(path: bytes, e: OSError) -> None:
        where = os.fsdecode(os.path.relpath(path, top))
        errors.append(
            f"cannot examine {where[:200]!r}{'...' if len(where) > 200 else ''}: {e.strerror}; "
            "whatever is there is unaccounted for"
        )

    for entry in treewalk.walk(top, failed, lstat=True, empty_dirs=True):
        assert entry.stat is not None  # lstat=True
        rel = os.fsdecode(entry.rel)
        yield (rel + "/" if entry.empty_dir else rel), entry.stat


def _check_manifest(
    root: Path,
    records: list[dict[str, Any]],
    present: dict[str, os.stat_result],
    result: VerificationResult,
) -> None:
    """The manifest is signed by the collector's key and must agree with the journal."""
    end = next((r for r in records if r.get("type") == "end"), None)
    if end is not None:
        result.ending = {k: end[k] for k in ("status", "stopped_by", "counts") if k in end}
    sums_record = next((r for r in records if r.get("type") == "sums"), None)
    if end is None:
        result.problems.append(
            "the collection did not finish: no 'end' record, so no manifest or SHA256SUMS "
            "vouch for it (the sealed prefix above is still valid)"
        )
    for name in (layout.MANIFEST, layout.MANIFEST_SIG, layout.SIGNER_PUB, layout.SUMS):
        if name not in present:
            if end is not None:
                result.files.append(FileVerdict(name, "missing"))
            continue
        if not stat.S_ISREG(present[name].st_mode):
            result.files.append(FileVerdict(name, "changed", "not a regular file"))
            present.pop(name)
    if result.signer_fingerprint and layout.SIGNER_PUB in present:
        try:
            pub = load_public_key_pem(_read_small(root / layout.SIGNER_PUB))
            same = fingerprint_of(pub) == result.signer_fingerprint
        except (KeyLoadError, OSError, ValueError):
            same = False
        result.files.append(
            FileVerdict(
                layout.SIGNER_PUB,
                "ok" if same else "changed",
                "" if same else "not the key that started the journal",
            )
        )
    if layout.SUMS in present:
        actual, _ = sha256_path_nofollow(os.fspath(root / layout.SUMS))
        good = sums_record is not None and sums_record.get("sha256") == actual
        result.files.append(
            FileVerdict(
                layout.SUMS,
                "ok" if good else "changed",
                "" if good else "hash differs from the journal's 'sums' record",
            )
        )
    if layout.MANIFEST not in present:
        return
    verdict = FileVerdict(layout.MANIFEST, "ok")
    try:
        data = _read_small(root / layout.MANIFEST)
        signature = _read_small(root / layout.MANIFEST_SIG)
        key = public_key_from_raw_b64(result.start["signer"]["public_key"])
        verify_signature(key, signature, data)  # before parsing: unsigned bytes are hostile
        manifest = json.loads(data)
        seq = manifest["chain"]["seq"]
        line_record = records[seq] if 0 <= seq < len(records) else None
        if line_record is None or line_record.get("type") != "seal":
            raise ValueError(f"its chain head points at seq {seq}, which is not a seal")
        if manifest["chain"]["head"] != sha256_bytes(canonical.dumps(line_record)):
            raise ValueError("its chain head differs from the journal")
        if sums_record is None or manifest.get("sums_sha256") != sums_record.get("sha256"):
            raise ValueError("it names a different SHA256SUMS than the journal")
        result.counts = dict(manifest.get("counts", {}))
        result.complete = True
    except (OSError, ValueError, KeyError, TypeError, SignatureError, RecursionError) as e:
        verdict = FileVerdict(layout.MANIFEST, "changed", str(e) or type(e).__name__)
    result.files.append(verdict)
    result.files.append(FileVerdict(layout.MANIFEST_SIG, verdict.status, verdict.detail))


def _check_sums_agree(
    root: Path,
    expected: dict[str, dict[str, Any]],
    present: dict[str, os.stat_result],
    result: VerificationResult,
) -> None:
    if not any(f.path == layout.SUMS and f.status == "ok" for f in result.files):
        return  # missing or not the journal's: already reported, and not to be parsed
    try:
        listed = parse_sums((root / layout.SUMS).read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        result.problems.append(f"SHA256SUMS is malformed: {e}")
        return
    diff = compare_sums(listed, {p: r["sha256"] for p, r in expected.items()})
    if diff:
        result.problems.append(
            f"SHA256SUMS disagrees with the journal (extra {diff.only_listed[:3]}, "
            f"lacking {diff.not_listed[:3]}, different {diff.differ[:3]})"
        )


def _hash_all(
    root: Path,
    expected: dict[str, dict[str, Any]],
    present: dict[str, os.stat_result],
    workers: int,
) -> list[FileVerdict]:
    local = threading.local()

    def check(item: tuple[str, dict[str, Any]]) -> FileVerdict:
        path, record = item
        st = present.get(path)
        if st is None:
            return FileVerdict(path, "missing", f"journal seq {record['seq']}")
        if not stat.S_ISREG(st.st_mode):
            return FileVerdict(path, "changed", "no longer a regular file")
        if st.st_size != record.get("size"):
            return FileVerdict(
                path, "changed", f"size {st.st_size}, journal says {record.get('size')}"
            )
        if not hasattr(local, "buf"):
            local.buf = bytearray(1024 * 1024)
        try:
            # No component is followed if it is a symlink (a directory swapped for one
            # since the walk would lead outside), at any depth; and the file opened must
            # still be the very one the walk saw.
            fd = treewalk.open_beneath(root_fd, path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                opened = os.fstat(fd)
                if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                    return FileVerdict(path, "changed", "replaced while it was being verified")
                digest, _ = sha256_fd(fd, local.buf)
            finally:
                os.close(fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR) and e.filename != os.fsencode(path):
                return FileVerdict(path, "changed", "replaced while it was being verified")
            return FileVerdict(path, "changed", f"cannot read: {e.strerror}")
        if digest != record.get("sha256"):
            return FileVerdict(path, "changed", "SHA-256 differs from the journal")
        if record.get("_unsealed"):
            return FileVerdict(path, "ok", "matches an unsealed record")
        return FileVerdict(path, "ok")

    def check_batch(batch: list[tuple[str, dict[str, Any]]]) -> list[FileVerdict]:
        return [check(item) for item in batch]

    # Biggest first, so large files spread over all workers; small ones go in batches.
    items = sorted(expected.items(), key=lambda kv: -kv[1]["size"])
    batches = [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return [verdict for batch in pool.map(check_batch, batches) for verdict in batch]
    finally:
        os.close(root_fd)


def _partial_verdict(rel: str, expected: dict[str, dict[str, Any]]) -> FileVerdict:
    """A file under its partial name: a copy a killed run was writing, or had journaled
    but not yet renamed. Still a problem (the run did not finish), said as what it is."""
    record = expected.get(rel[: -len(layout.PARTIAL_SUFFIX)])
    if record is not None:
        return FileVerdict(
            rel, "incomplete", f"incomplete copy from a killed run (seq {record['seq']})"
        )
    return FileVerdict(
        rel, "incomplete", "incomplete copy from a killed run (being written when it stopped)"
    )


def _written_in_place(records: list[dict[str, Any]]) -> dict[str, FileVerdict]:
    """Artifacts a sink that cannot rename (an SFTP drop-box) wrote under their final
    name: each announced by a ``begin`` record before its bytes. One with no ``artifact``
    record after it was cut short by a killed run, or given up (``discarded``)."""
    verdicts: dict[str, FileVerdict] = {}
    for record in records:
        path, kind = record.get("path"), record.get("type")
        if not isinstance(path, str):
            continue
        if kind == "begin":
            detail = f"incomplete copy from a killed run (seq {record.get('seq')})"
            verdicts[path] = FileVerdict(path, "incomplete", detail)
        elif kind == "discarded" and path in verdicts:
            detail = f"copy given up and left in place (seq {record.get('seq')}); not evidence"
            verdicts[path] = FileVerdict(path, "ok", detail)
    return verdicts


def verify_evidence(
    evidence_dir: str | os.PathLike[str],
    pin_fingerprint: str | None = None,
    workers: int | None = None,
) -> VerificationResult:
    root = Path(evidence_dir)
    journal_path = root / layout.JOURNAL
    if not root.is_dir() or not journal_path.is_file() or journal_path.is_symlink():
        raise NotEvidenceError(f"{root} is not an evidence directory (no {layout.JOURNAL})")
    result = VerificationResult(evidence_dir=str(root))
    records = _read_journal(journal_path, result)
    result.records = len(records)
    sealed_through = _check_seals(records, result)
    result.sealed_through = sealed_through
    trusted = records if sealed_through is None else records[: sealed_through + 1]
    expected = _expected_files(records, sealed_through, result)

    walk_errors: list[str] = []
    present = {rel: st for rel, st in _walk(root, walk_errors)}
    result.problems.extend(walk_errors)
    present.pop(layout.JOURNAL, None)
    _check_manifest(root, trusted, present, result)
    _check_sums_agree(root, expected, present, result)
    result.files.extend(_hash_all(root, expected, present, workers or os.cpu_count() or 2))

    accounted = set(expected) | {
        layout.MANIFEST,
        layout.MANIFEST_SIG,
        layout.SIGNER_PUB,
        layout.SUMS,
    }
    in_place = _written_in_place(records)
    for rel in sorted(set(present) - accounted):
        if rel in in_place and stat.S_ISREG(present[rel].st_mode):
            result.files.append(in_place[rel])
            continue
        if rel.endswith(layout.PARTIAL_SUFFIX) and stat.S_ISREG(present[rel].st_mode):
            verdict = _partial_verdict(rel, expected)
            base = rel[: -len(layout.PARTIAL_SUFFIX)]
            # Journaled, not yet renamed: one verdict for it, not 'missing' as well.
            result.files = [f for f in result.files if (f.path, f.status) != (base, "missing")]
            result.files.append(verdict)
            continue
        if rel == layout.LOG and not result.ending and stat.S_ISREG(present[rel].st_mode):
            result.files.append(
                FileVerdict(
                    rel,
                    "incomplete",
                    "run log of a run that did not finish (it is journaled when the run ends)",
                )
            )
            continue
        kind = "symlink" if stat.S_ISLNK(present[rel].st_mode) else "file"
        if rel.endswith("/"):
            kind = "empty directory"
        result.files.append(FileVerdict(rel, "unexpected", f"{kind} not recorded in the journal"))

    if pin_fingerprint and result.signer_fingerprint:
        result.pin = "matched" if pin_fingerprint == result.signer_fingerprint else "mismatch"
        if result.pin == "mismatch":
            result.problems.append(
                f"signer mismatch: signed by {result.signer_fingerprint}, "
                f"expected {pin_fingerprint}"
            )
    return result
