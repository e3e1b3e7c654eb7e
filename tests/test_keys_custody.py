"""Keys and custody: keygen, signing with a kit key, and a signed hand-over to a lab."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import collect_json, journal_records, preserve, verify
from evidence_factory import make_source_tree

PASS = {"PRESERVE_KEY_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    out = tmp_path / "keys"
    for name in ("signer", "lab"):
        result = preserve("keygen", "--out", out, "--name", name, env=PASS)
        assert result.returncode == 0, result.stderr.decode()
    return out


def test_keygen_writes_encrypted_private_key(keys: Path) -> None:
    private = (keys / "signer.key").read_bytes()
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in private
    assert stat.S_IMODE(os.stat(keys / "signer.key").st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in (keys / "signer.pub").read_bytes()


def test_keygen_refuses_to_overwrite_and_needs_a_passphrase(keys: Path) -> None:
    again = preserve("keygen", "--out", keys, env=PASS)
    assert again.returncode == 2 and b"already exists" in again.stderr
    nopass = preserve("keygen", "--out", keys, "--name", "other")
    assert nopass.returncode == 2 and b"PRESERVE_KEY_PASSPHRASE" in nopass.stderr


def test_full_custody_story(tmp_path: Path, keys: Path) -> None:
    src = make_source_tree(tmp_path)
    summary = collect_json(
        tmp_path / "out",
        "--only",
        "files",
        "--path",
        src,
        "--key",
        keys / "signer.key",
        "--case",
        "IR-42",
        "--examiner",
        "A. Admin",
        "--note",
        "web01 at 03:10",
        env=PASS,
    )
    evidence = Path(summary["evidence_dir"])
    start = journal_records(evidence)[0]
    assert start["case"] == "IR-42" and start["examiner"] == "A. Admin"
    assert start["signer"]["ephemeral"] is False
    assert len(start["tool"]["code_sha256"]) == 64
    assert start["host"]["hostname"]
    # The passphrase and key material never enter the evidence.
    blob = b"".join(p.read_bytes() for p in evidence.rglob("*") if p.is_file())
    assert PASS["PRESERVE_KEY_PASSPHRASE"].encode() not in blob
    assert b"PRIVATE KEY" not in blob

    pinned = verify(evidence, "--pubkey", keys / "signer.pub")
    assert pinned.returncode == 0, pinned.stdout.decode()

    moved = preserve(
        "custody",
        evidence,
        "--to",
        "Forensic lab",
        "--key",
        keys / "lab.key",
        "--note",
        "received sealed bag 7",
        env=PASS,
    )
    assert moved.returncode == 0, moved.stderr.decode()
    records = journal_records(evidence)
    transfer, seal = records[-2], records[-1]
    assert transfer["type"] == "transfer" and transfer["to"] == "Forensic lab"
    assert seal["type"] == "seal" and seal["signer"] == transfer["fingerprint"]

    result = verify(evidence, "--json", "--pubkey", keys / "signer.pub")
    assert result.returncode == 0, result.stdout.decode()
    report = json.loads(result.stdout)
    assert [h["name"] for h in report["holders"]] == ["A. Admin", "Forensic lab"]
    assert report["holders"][1]["note"] == "received sealed bag 7"
    text = verify(evidence).stdout.decode()
    assert "Forensic lab" in text and "A. Admin" in text


def test_custody_refuses_tampered_evidence(tmp_path: Path, keys: Path) -> None:
    src = make_source_tree(tmp_path)
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    artifact = next(p for p in (evidence / "artifacts").rglob("*") if p.is_file())
    artifact.chmod(0o644)
    artifact.write_bytes(b"altered")
    before = (evidence / "custody.jsonl").read_bytes()
    moved = preserve("custody", evidence, "--to", "Lab", "--key", keys / "lab.key", env=PASS)
    assert moved.returncode == 1
    assert b"no transfer was recorded" in moved.stderr
    assert (evidence / "custody.jsonl").read_bytes() == before


def test_wrong_passphrase_is_a_clear_usage_error(tmp_path: Path, keys: Path) -> None:
    src = make_source_tree(tmp_path)
    result = preserve(
        "-o",
        tmp_path / "out",
        "--only",
        "files",
        "--path",
        src,
        "--key",
        keys / "signer.key",
        env={"PRESERVE_KEY_PASSPHRASE": "wrong"},
    )
    assert result.returncode == 2
    assert b"wrong passphrase" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing collected


def test_ephemeral_key_fingerprint_is_printed_and_pins(tmp_path: Path) -> None:
    src = make_source_tree(tmp_path)
    result = preserve("-o", tmp_path / "out", "--only", "files", "--path", src)
    assert result.returncode == 0
    err = result.stderr.decode()
    line = next(li for li in err.splitlines() if "Signer fingerprint" in li)
    written_down = line.split("Signer fingerprint", 1)[1].strip()  # grouped, as on paper
    evidence = next((tmp_path / "out").iterdir())
    assert verify(evidence, "--fingerprint", written_down).returncode == 0
    assert b"PRIVATE" not in b"".join(p.read_bytes() for p in evidence.rglob("*") if p.is_file())


def test_verify_usage_errors(tmp_path: Path) -> None:
    assert verify(tmp_path).returncode == 2  # not an evidence directory
    assert verify(tmp_path / "nope").returncode == 2
    bad = verify(tmp_path, "--fingerprint", "abc")
    assert bad.returncode == 2 and b"64 hex digits" in bad.stderr


def _kit_signed_evidence(tmp_path: Path, keys: Path) -> tuple[Path, dict]:
    src = make_source_tree(tmp_path)
    summary = collect_json(
        tmp_path / "out", "--only", "files", "--path", src, "--key", keys / "signer.key", env=PASS
    )
    return Path(summary["evidence_dir"]), summary


def _hand_over(evidence: Path, keys: Path, giver: str):  # type: ignore[no-untyped-def]
    return preserve(
        "custody",
        evidence,
        "--to",
        "Lab",
        "--key",
        keys / "lab.key",
        "--from-key",
        keys / giver,
        env=PASS,
    )


def test_handover_countersigned_by_the_giver(tmp_path: Path, keys: Path) -> None:
    evidence, summary = _kit_signed_evidence(tmp_path, keys)
    wrong = _hand_over(evidence, keys, "lab.key")
    assert wrong.returncode == 2 and b"not the current holder" in wrong.stderr
    moved = _hand_over(evidence, keys, "signer.key")
    assert moved.returncode == 0, moved.stderr.decode()
    assert b"countersigned by the giver" in moved.stdout
    records = journal_records(evidence)
    assert [r["type"] for r in records[-3:]] == ["transfer", "seal", "seal"]
    assert records[-2]["reason"] == "handover"
    assert records[-2]["signer"] == summary["fingerprint"]
    report = json.loads(verify(evidence, "--json").stdout)
    assert report["status"] == "intact"
    assert [h["cosigned"] for h in report["holders"]] == [False, True]
    assert "countersigned by the previous holder" in verify(evidence).stdout.decode()


def test_handover_seal_by_a_stranger_is_a_bad_signature(tmp_path: Path, keys: Path) -> None:
    """A 'handover' seal must be made by the giver's key; any other key breaks the chain."""
    import base64

    from manifests import canonical
    from manifests.journal import seal_message
    from manifests.signing import Signer

    evidence, _ = _kit_signed_evidence(tmp_path, keys)
    assert _hand_over(evidence, keys, "signer.key").returncode == 0
    lines = (evidence / "custody.jsonl").read_bytes().split(b"\n")[:-1]
    handover = json.loads(lines[-2])
    stranger = Signer.generate_ephemeral()
    handover["signer"] = stranger.fingerprint
    handover.pop("signature")
    handover["signature"] = base64.b64encode(stranger.sign(seal_message(handover))).decode()
    lines[-2] = canonical.dumps(handover)
    (evidence / "custody.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = verify(evidence)
    assert result.returncode == 1
    assert b"bad signature on seal" in result.stdout


def test_a_transfer_and_its_seals_reach_the_journal_in_one_write(
    tmp_path: Path, keys: Path
) -> None:
    """Killed between the transfer and its seal, ``custody`` must not leave a holder who
    never signed: strace shows the journal gets exactly one write, holding the transfer,
    the giver's countersignature and the receiver's seal."""
    import shutil
    import subprocess
    import sys

    from conftest import PRESERVE_CODE, ROOT

    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    evidence, _ = _kit_signed_evidence(tmp_path, keys)
    trace = tmp_path / "trace"
    argv = [sys.executable, "-c", PRESERVE_CODE, "custody", evidence, "--to", "Lab"]
    argv += ["--key", keys / "lab.key", "--from-key", keys / "signer.key"]
    done = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-s", "65536", "-e", "trace=write,pwrite64,writev"]
        + ["-o", trace, *argv],
        env={**os.environ, **PASS},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    writes = [
        line for line in trace.read_text().splitlines() if "custody.jsonl>" in line.split(",")[0]
    ]
    assert len(writes) == 1, writes
    assert writes[0].count('\\"type\\":\\"transfer\\"') == 1
    assert writes[0].count('\\"type\\":\\"seal\\"') == 2
    assert verify(evidence).returncode == 0
