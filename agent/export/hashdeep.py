"""hashdeep's known-hashes format, for ``hashdeep -a`` (audit mode).

The file lists every stored artifact and the run log with its size and SHA-256, paths
relative to the evidence directory, so the audit is run from inside it::

    cd EVIDENCE_DIR && hashdeep -c sha256 -l -r -a -k /path/to/evidence.hashdeep \\
        artifacts collection.log

hashdeep matches by hash and name; ``-l`` makes it print (and compare) relative names.
The journal, manifest, SHA256SUMS and signer.pub are not listed: they are the custody
record itself, checked by ``verify``."""

from __future__ import annotations

from typing import Any

from .. import __version__


def render(artifacts: list[dict[str, Any]], evidence_name: str) -> str:
    lines = [
        "%%%% HASHDEEP-1.0",
        "%%%% size,sha256,filename",
        f"## written by preserve {__version__} from the custody journal of {evidence_name}",
        "## audit: cd EVIDENCE_DIR && hashdeep -c sha256 -l -r -a -k THIS_FILE "
        "artifacts collection.log",
        "## ",
    ]
    for a in sorted(artifacts, key=lambda r: r["path"]):
        path = a["path"]
        if "\n" in path or "\r" in path:  # stored names never hold these (pathmap)
            continue
        lines.append(f"{int(a['size'])},{a['sha256']},{path}")
    return "\n".join(lines) + "\n"
