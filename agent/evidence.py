"""Creating and closing an evidence directory.

The directory is ``OUTPUT/<hostname>-<YYYYmmddTHHMMSSZ>/``. Closing it stores the run log,
writes ``SHA256SUMS`` from the journal's artifact records, seals, and writes the signed
``manifest.json``: the steps after which every file in the directory is accounted for."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from manifests import canonical, layout
from manifests.clock import compact_stamp
from manifests.digest import sha256_bytes
from manifests.durable import fsync_dir
from manifests.journal import Journal
from manifests.signing import Signer, public_key_pem
from manifests.sums import format_sums


def safe_hostname() -> str:
    name = socket.gethostname() or "host"
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)[:64]


def create_evidence_dir(output: Path) -> Path:
    """Make a new, empty evidence directory; never reuse one."""
    output.mkdir(parents=True, exist_ok=True)
    base = f"{safe_hostname()}-{compact_stamp()}"
    for n in range(1, 100):
        candidate = output / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir(mode=0o750)
        except FileExistsError:
            continue
        fsync_dir(output)
        return candidate
    raise FileExistsError(f"could not create a new evidence directory under {output}")


def write_signer_pub(root: Path, signer: Signer) -> None:
    (root / layout.SIGNER_PUB).write_bytes(public_key_pem(signer.public_key))


def write_sums(root: Path, hashed: dict[str, str]) -> str:
    data = format_sums(hashed.items())
    (root / layout.SUMS).write_bytes(data)
    return sha256_bytes(data)


def write_manifest(
    root: Path, journal: Journal, final_seal: dict[str, Any], fields: dict[str, Any]
) -> None:
    """Signed summary; the raw Ed25519 signature over the file's exact bytes lets
    ``openssl pkeyutl -verify -rawin`` check it with ``signer.pub`` alone."""
    manifest = {
        **fields,
        "chain": {"seq": final_seal["seq"], "head": sha256_bytes(canonical.dumps(final_seal))},
        "signer": journal.signer.fingerprint,
    }
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (root / layout.MANIFEST).write_bytes(data)
    (root / layout.MANIFEST_SIG).write_bytes(journal.signer.sign(data))
