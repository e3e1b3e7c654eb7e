"""Creating and closing an evidence directory.

The directory is ``OUTPUT/<hostname>-<YYYYmmddTHHMMSSZ>/``. Closing it stores the run log,
writes ``SHA256SUMS`` from the journal's artifact records, seals, and writes the signed
``manifest.json``: the steps after which every file in the directory is accounted for."""

from __future__ import annotations

import contextlib
import json
import os
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

RESERVE_BYTES = 4 * 1024 * 1024


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


def reserve_space(root: Path) -> bool:
    """Hold back a few MB so a full disk still leaves room to seal. False if impossible."""
    path = root / layout.RESERVE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
        os.posix_fallocate(fd, 0, min(RESERVE_BYTES, max(free // 4, 4096)))
        return True
    except OSError:
        release_space(root)
        return False
    finally:
        os.close(fd)


def release_space(root: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(root / layout.RESERVE)


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
