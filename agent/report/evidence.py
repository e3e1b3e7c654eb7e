"""Reading an evidence directory for reporting: the verdict, the journal and the artifacts.

A report is often made from evidence that failed verification (that is when one is most
needed), so nothing here trusts the directory: journal lines are parsed one by one and
reading stops at the first unreadable one, stored files are opened only inside the
directory, never through a symlink, and never beyond a size bound.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.readfile import read_regular
from manifests import layout
from manifests.errors import ManifestError
from manifests.verify import VerificationResult, verify_evidence

MAX_JSON = 256 * 1024 * 1024  # bytes read from one stored JSON file


def to_ns(text: Any) -> int | None:
    """``2026-11-27T05:20:00.123456789Z`` (any fraction, an offset, a space for ``T``, or a
    date alone) -> ns since the epoch; None when it is not such a time."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if len(text) == 10:  # a date alone: midnight UTC
        text += "T00:00:00"
    if len(text) < 19:
        return None
    text = text[:10] + "T" + text[11:]
    base, frac, zone = text[:19], "", "+00:00"
    rest = text[19:]
    if rest.startswith("."):
        digits = len(rest) - len(rest[1:].lstrip("0123456789"))
        frac, rest = rest[1:digits], rest[digits:]
    if rest not in ("", "Z", "z"):
        zone = rest
    try:
        dt = datetime.fromisoformat(base + zone)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    seconds = int(dt.timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def utc_text(ns: int) -> str:
    """Whole-second UTC for people; the journal keeps the nanoseconds."""
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def source_name(artifact: dict[str, Any]) -> str:
    """The host path an artifact was copied from, for people: a deleted executable copied
    through ``/proc/PID/exe`` is named by the executable's path (kept in its record)."""
    path = str((artifact.get("source") or {}).get("path") or artifact.get("path"))
    exe = artifact.get("exe")
    if path.startswith("/proc/") and path.endswith("/exe") and isinstance(exe, str) and exe:
        return f"{exe} (via {path})"
    return path


@dataclass
class Evidence:
    root: Path
    verification: VerificationResult
    records: list[dict[str, Any]]
    journal_problem: str | None = None
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def start(self) -> dict[str, Any]:
        return self.records[0] if self.records and self.records[0].get("type") == "start" else {}

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") in types]

    def artifact_for_source(self, suffix: str) -> list[dict[str, Any]]:
        """Artifacts whose source path ends with ``suffix`` (e.g. ``/wtmp``)."""
        return [
            r
            for r in self.artifacts.values()
            if str((r.get("source") or {}).get("path", "")).endswith(suffix)
        ]

    def read_bytes(self, rel: str, limit: int = MAX_JSON) -> bytes | None:
        """A stored file's bytes, or None when it is absent, unsafe or not regular."""
        if not layout.is_safe_relpath(rel):
            return None
        path = self.root / rel
        real = os.path.realpath(path)
        if not real.startswith(os.path.realpath(self.root) + os.sep):
            return None
        try:
            return read_regular(path, limit, follow=False)
        except OSError:
            return None

    def read_json(self, rel: str) -> Any:
        data = self.read_bytes(rel)
        if data is None:
            return None
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None

    def read_jsonl(self, rel: str) -> list[Any] | None:
        data = self.read_bytes(rel)
        if data is None:
            return None
        rows = []
        for line in data.splitlines():
            try:
                rows.append(json.loads(line))
            except (ValueError, UnicodeDecodeError):
                continue
        return rows


def load(evidence_dir: Path, workers: int | None = None, chain_head: str | None = None) -> Evidence:
    """Verify, then read the records verification read (the same parser, the same chain:
    nothing after a break in the chain is reported as fact). Raises ``NotEvidenceError``
    for a directory that holds none of the evidence files. ``chain_head``: the head from
    the custody form, which the last seal's must be."""
    verification = verify_evidence(evidence_dir, workers=workers, chain_head=chain_head)
    problem = None
    records: list[dict[str, Any]] = []
    try:
        records.extend(verification.iter_records())
    except (OSError, ManifestError) as e:
        problem = f"the journal could not be read again after verification: {e}"
    evidence = Evidence(evidence_dir, verification, records, problem)
    for record in records:
        if record.get("type") == "artifact" and isinstance(record.get("path"), str):
            evidence.artifacts[record["path"]] = record
    return evidence
