"""Building evidence directories for tests, and re-signing them as a forger would."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

from manifests import canonical
from manifests.digest import ZERO_HASH, sha256_bytes
from manifests.journal import SEAL_FIELD, seal_message
from manifests.signing import Signer, public_key_pem, public_key_to_raw_b64
from manifests.writer import EvidenceWriter


def make_source_tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.log").write_bytes(b"first line\nsecond line\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (src / "sub" / "deeper" / "c.txt").write_text("deep\n")
    (src / "empty").write_bytes(b"")
    return src


def copy_evidence(evidence: Path, dest: Path) -> Path:
    target = dest / evidence.name
    shutil.copytree(evidence, target, symlinks=True)
    return target


def forge(evidence: Path, signer: Signer, mutate=None) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the whole journal, manifest and signer.pub with another key, as an attacker
    with write access would: every chain link and signature is valid, only the key differs.
    ``mutate(records)`` may change the records first."""
    lines = (evidence / "custody.jsonl").read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    if mutate:
        mutate(records)
    head = ZERO_HASH
    out = []
    for seq, record in enumerate(records):
        record["seq"], record["prev"] = seq, head
        if record["type"] == "start":
            record["signer"] = {
                **record["signer"],
                "fingerprint": signer.fingerprint,
                "public_key": public_key_to_raw_b64(signer.public_key),
            }
        if record["type"] == "seal":
            record["signer"] = signer.fingerprint
            record.pop(SEAL_FIELD, None)
            record[SEAL_FIELD] = base64.b64encode(signer.sign(seal_message(record))).decode()
        line = canonical.dumps(record)
        head = sha256_bytes(line)
        out.append(line)
    (evidence / "custody.jsonl").write_bytes(b"\n".join(out) + b"\n")
    manifest_path = evidence / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_bytes())
        final = json.loads(out[-1])
        manifest["chain"] = {"seq": final["seq"], "head": sha256_bytes(out[-1])}
        manifest["signer"] = signer.fingerprint
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        manifest_path.write_bytes(data)
        (evidence / "manifest.json.sig").write_bytes(signer.sign(data))
    (evidence / "signer.pub").write_bytes(public_key_pem(signer.public_key))


def new_writer(parent: Path, name: str = "evidence") -> EvidenceWriter:
    """A fresh evidence directory ``parent/name`` and its writer (ephemeral key), for
    driving the copy engine or a collector without the command line."""
    return EvidenceWriter.create(parent, name, Signer.generate_ephemeral())
