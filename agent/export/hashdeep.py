"""hashdeep's known-hashes format, for ``hashdeep -a`` (audit mode).

The file lists every stored artifact and the run log with its size and SHA-256, paths
relative to the evidence directory, so the audit is run from inside it::

    cd EVIDENCE_DIR && hashdeep -c sha256 -l -r -a -k /path/to/evidence.hashdeep \\
        artifacts collection.log

hashdeep matches by hash and name; ``-l`` makes it print (and compare) relative names.
The journal, manifest, SHA256SUMS and signer.pub are not listed: they are the custody
record itself, checked by ``verify``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import __version__
from .stream import Sink


def write(out: Sink, artifacts: Iterable[dict[str, Any]], evidence_name: str) -> None:
    """The list, one line per artifact as its record is read (journal order)."""
    out.write(
        "%%%% HASHDEEP-1.0\n"
        "%%%% size,sha256,filename\n"
        f"## written by preserve {__version__} from the custody journal of {evidence_name}\n"
        "## audit: cd EVIDENCE_DIR && hashdeep -c sha256 -l -r -a -k THIS_FILE "
        "artifacts collection.log\n"
        "## \n"
    )
    for a in artifacts:
        path, size, digest = a["path"], a.get("size"), a.get("sha256")
        if "\n" in path or "\r" in path:  # stored names never hold these (pathmap)
            continue
        if type(size) is int and isinstance(digest, str):  # else: tampering, see verify
            out.write(f"{size},{digest},{path}\n")
