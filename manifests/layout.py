"""Names inside an evidence directory, and the rule that keeps every journal path inside it."""

from __future__ import annotations

JOURNAL = "custody.jsonl"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.json.sig"
SIGNER_PUB = "signer.pub"
SUMS = "SHA256SUMS"
LOG = "collection.log"
ARTIFACTS = "artifacts"

FIXED_FILES = (JOURNAL, MANIFEST, MANIFEST_SIG, SIGNER_PUB, SUMS, LOG)

# An artifact is written under its name plus this suffix and renamed once its record is
# in the journal, so a copy cut short by a killed run is never mistaken for a stored one.
# Stored names never end so: their '%' is always followed by two hex digits or '~'.
PARTIAL_SUFFIX = "%part"


def partial_name(rel: str) -> str:
    return rel + PARTIAL_SUFFIX


def is_safe_relpath(path: str) -> bool:
    """True for a plain relative path with no ``..``, ``.``, empty or absolute parts.

    A journal is data from a possibly hostile source; a path such as ``../../etc/shadow``
    or ``/etc/shadow`` must be reported as tampering and never opened."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))
