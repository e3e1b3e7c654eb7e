"""The evidence directory's own files: ``signer.pub``, ``SHA256SUMS``, ``manifest.json`` and
its signature must be regular, singly linked files that agree with the journal; the
manifest is signed by the collector's key and names a seal of the journal."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import layout
from .digest import sha256_path_nofollow
from .errors import KeyLoadError, SignatureError
from .signing import fingerprint_of, load_public_key_pem, public_key_from_raw_b64, verify_signature
from .verify_custody import CustodyCheck, Seen
from .verify_files import FileVerdict, hard_link

if TYPE_CHECKING:
    from .verify import VerificationResult

# Bounds on what is read into memory; real files are far smaller.
MAX_SMALL_FILE = 1024 * 1024  # manifest.json, its signature, signer.pub


def _read_small(path: Path) -> bytes:
    """A file that is small when genuine; a hostile one must not fill memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_SMALL_FILE + 1)
    if len(data) > MAX_SMALL_FILE:
        raise ValueError(f"larger than {MAX_SMALL_FILE} bytes")
    return data


def _trusted(seen: Seen | None, custody: CustodyCheck) -> dict[str, Any] | None:
    """A record kept by the custody check, if the sealed prefix covers it (all of the
    journal when nothing is sealed: the missing seal is reported on its own)."""
    if seen is None:
        return None
    through = custody.sealed_through
    return seen.record if through is None or seen.seq <= through else None


def check_own_files(
    root: Path, own: dict[str, os.stat_result], custody: CustodyCheck, result: VerificationResult
) -> bool:
    """Verdicts on the directory's own files; True when ``SHA256SUMS`` is the journal's
    (and so may be compared with it, line by line)."""
    journal = own.get(layout.JOURNAL)
    if journal is not None and journal.st_nlink > 1:
        result.problems.append(f"{layout.JOURNAL} is {hard_link(journal.st_nlink)}")
    end = _trusted(custody.end, custody)
    sums_record = _trusted(custody.sums, custody)
    if end is not None:
        result.ending = end
    else:
        result.problems.append(
            "the collection did not finish: no 'end' record, so no manifest or SHA256SUMS "
            "vouch for it (the sealed prefix above is still valid: the files listed ok are "
            "the collection's; nothing else is)"
        )
    present = {name: st for name, st in own.items() if name != layout.JOURNAL}
    for name in (layout.MANIFEST, layout.MANIFEST_SIG, layout.SIGNER_PUB, layout.SUMS):
        if name not in present:
            if end is not None:
                result.add_files([FileVerdict(name, "missing")])
            continue
        st = present[name]
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            detail = (
                "not a regular file" if not stat.S_ISREG(st.st_mode) else hard_link(st.st_nlink)
            )
            result.add_files([FileVerdict(name, "changed", detail)])
            present.pop(name)
    if result.signer_fingerprint and layout.SIGNER_PUB in present:
        try:
            pub = load_public_key_pem(_read_small(root / layout.SIGNER_PUB))
            same = fingerprint_of(pub) == result.signer_fingerprint
        except (KeyLoadError, OSError, ValueError):
            same = False
        detail = "" if same else "not the key that started the journal"
        result.add_files([FileVerdict(layout.SIGNER_PUB, "ok" if same else "changed", detail)])
    sums_ok = False
    if layout.SUMS in present:
        actual, _ = sha256_path_nofollow(os.fspath(root / layout.SUMS))
        sums_ok = sums_record is not None and sums_record.get("sha256") == actual
        detail = "" if sums_ok else "hash differs from the journal's 'sums' record"
        result.add_files([FileVerdict(layout.SUMS, "ok" if sums_ok else "changed", detail)])
    if layout.MANIFEST in present:
        verdict = _check_manifest(root, custody, sums_record, result)
        result.add_files(
            [verdict, FileVerdict(layout.MANIFEST_SIG, verdict.status, verdict.detail)]
        )
    return sums_ok


def _check_manifest(
    root: Path,
    custody: CustodyCheck,
    sums_record: dict[str, Any] | None,
    result: VerificationResult,
) -> FileVerdict:
    """The manifest is signed by the collector's key and must agree with the journal."""
    try:
        data = _read_small(root / layout.MANIFEST)
        signature = _read_small(root / layout.MANIFEST_SIG)
        key = public_key_from_raw_b64(result.start["signer"]["public_key"])
        verify_signature(key, signature, data)  # before parsing: unsigned bytes are hostile
        manifest = json.loads(data)
        seq = manifest["chain"]["seq"]
        head = custody.seal_heads.get(seq)
        if head is None:
            raise ValueError(f"its chain head points at seq {seq}, which is not a seal")
        if manifest["chain"]["head"] != head:
            raise ValueError("its chain head differs from the journal")
        if sums_record is None or manifest.get("sums_sha256") != sums_record.get("sha256"):
            raise ValueError("it names a different SHA256SUMS than the journal")
        result.counts = dict(manifest.get("counts", {}))
        result.complete = True
    except (OSError, ValueError, KeyError, TypeError, SignatureError, RecursionError) as e:
        return FileVerdict(layout.MANIFEST, "changed", str(e) or type(e).__name__)
    return FileVerdict(layout.MANIFEST, "ok")
