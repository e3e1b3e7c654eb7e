"""What the lab checks when the evidence arrives, through the real command line: the chain
head from the paper custody form (``--chain-head`` on verify, custody and report), a
directory verified under another name, hard links, and a deleted journal."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import collect_json, journal_records, preserve, verify
from evidence_factory import copy_evidence, make_source_tree

from manifests.errors import VerificationError
from manifests.signing import Signer, grouped
from manifests.verify import require_intact, verify_evidence

PASS = {"PRESERVE_KEY_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(evidence directory, chain head from its closing box) of one collection."""
    base = tmp_path_factory.mktemp("collected")
    summary = collect_json(base / "out", "--only", "files", "--path", make_source_tree(base))
    return Path(summary["evidence_dir"]), summary["chain_head"]


@pytest.fixture
def evidence(collected: tuple[Path, str], tmp_path: Path) -> Path:
    return copy_evidence(collected[0], tmp_path)


def _lab_key(tmp_path: Path) -> Path:
    key = tmp_path / "lab.key"
    key.write_bytes(Signer.generate_ephemeral().private_pem(None))
    return key


def _json(*args: str | os.PathLike[str]) -> tuple[int, dict]:
    result = verify("--json", *args)
    return result.returncode, json.loads(result.stdout)


# -- the chain head on the custody form ----------------------------------------------


def test_chain_head_from_the_form_matches(evidence: Path, collected: tuple[Path, str]) -> None:
    head = collected[1]
    result = verify(evidence, "--chain-head", head)
    assert result.returncode == 0, result.stdout.decode()
    assert f"Chain head: {head} (pinned, matches the last seal)" in result.stdout.decode()
    # as written on paper: grouped, upper case
    assert verify(evidence, "--chain-head", grouped(head).upper()).returncode == 0
    code, report = _json(evidence, "--chain-head", head)
    assert code == 0 and report["chain_pin"] == "matched" and report["sealed_head"] == head


def test_chain_head_of_another_collection_fails(evidence: Path) -> None:
    other = "ab" * 32
    result = verify(evidence, "--chain-head", other)
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert f"chain head mismatch: this journal never reaches {other}" in out
    assert "DOES NOT MATCH the pinned head" in out


def test_records_appended_after_the_pinned_head_are_listed(
    evidence: Path, collected: tuple[Path, str], tmp_path: Path
) -> None:
    """The form says the collection's head; a transfer came after it. The pin fails (the
    form is out of date, or someone appended) and the transfer is named."""
    moved = preserve("custody", evidence, "--to", "Forensic lab", "--key", _lab_key(tmp_path))
    assert moved.returncode == 0, moved.stderr.decode()
    new_head = moved.stdout.decode().split("chain head:")[1].split()[0]
    result = verify(evidence, "--chain-head", collected[1])
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert "chain head mismatch: the head given is that of seq" in out
    assert "2 record(s) were appended after it" in out
    assert "transfer to 'Forensic lab'" in out
    code, report = _json(evidence, "--chain-head", collected[1])
    assert code == 1 and [r.split(" ", 2)[2] for r in report["after_chain_pin"]][0] == (
        "transfer to 'Forensic lab'"
    )
    assert verify(evidence, "--chain-head", new_head).returncode == 0  # the updated form


def test_cut_off_transfer_is_caught_by_the_pinned_head(evidence: Path, tmp_path: Path) -> None:
    """Without the pin, cutting the lab's receipt off leaves a valid, shorter story (see
    test_adversarial's xfail); with the head the lab wrote down, it fails."""
    before = (evidence / "custody.jsonl").read_bytes()
    moved = preserve("custody", evidence, "--to", "Lab", "--key", _lab_key(tmp_path))
    new_head = moved.stdout.decode().split("chain head:")[1].split()[0]
    (evidence / "custody.jsonl").write_bytes(before)
    assert verify(evidence).returncode == 0
    result = verify(evidence, "--chain-head", new_head)
    assert result.returncode == 1 and b"never reaches" in result.stdout


def test_older_directory_of_the_same_host_and_key_does_not_pass_as_newer(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    assert preserve("keygen", "--out", keys, "--name", "kit", env=PASS).returncode == 0
    src = make_source_tree(tmp_path)
    args = ("--only", "files", "--path", src, "--key", keys / "kit.key")
    older = collect_json(tmp_path / "out", *args, env=PASS)
    (src / "a.log").write_bytes(b"first line\nsecond line\nthird line\n")
    newer = collect_json(tmp_path / "out", *args, env=PASS)
    assert older["fingerprint"] == newer["fingerprint"]
    # The older directory, renamed to the newer one's name, handed over as the newer.
    swapped = tmp_path / "lab" / Path(newer["evidence_dir"]).name
    shutil.copytree(older["evidence_dir"], swapped, symlinks=True)
    pinned_key = ("--fingerprint", newer["fingerprint"])
    assert verify(swapped, *pinned_key).returncode == 0  # the key alone cannot tell
    result = verify(swapped, *pinned_key, "--chain-head", newer["chain_head"])
    assert result.returncode == 1 and b"never reaches" in result.stdout
    assert b"was created as" in result.stdout  # and the rename is said


def test_custody_refuses_when_the_head_does_not_match(evidence: Path, tmp_path: Path) -> None:
    before = (evidence / "custody.jsonl").read_bytes()
    result = preserve(
        "custody", evidence, "--to", "Lab", "--key", _lab_key(tmp_path), "--chain-head", "0" * 64
    )
    assert result.returncode == 1, result.stderr.decode()
    assert b"never reaches" in result.stdout and b"no transfer was recorded" in result.stderr
    assert (evidence / "custody.jsonl").read_bytes() == before


def test_custody_goes_ahead_when_the_head_matches(
    evidence: Path, collected: tuple[Path, str], tmp_path: Path
) -> None:
    key = _lab_key(tmp_path)
    result = preserve(
        "custody", evidence, "--to", "Lab", "--key", key, "--chain-head", collected[1]
    )
    assert result.returncode == 0, result.stderr.decode()
    assert journal_records(evidence)[-2]["type"] == "transfer"


def test_report_fails_the_evidence_when_the_head_does_not_match(
    evidence: Path, collected: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    args = ("report", evidence, "--format", "json", "-o", out)
    assert preserve(*args, "--chain-head", collected[1]).returncode == 0
    result = preserve(*args, "--chain-head", "0" * 64)
    assert result.returncode == 1, result.stderr.decode()
    verification = json.loads(out.read_bytes())["verification"]
    assert not verification["ok"]
    assert any("chain head mismatch" in p for p in verification["problems"])


@pytest.mark.parametrize("command", [("verify",), ("report",), ("custody", "--to", "L")])
def test_a_chain_head_that_is_not_64_hex_digits_is_a_usage_error(
    evidence: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    extra = ("--key", _lab_key(tmp_path)) if command[0] == "custody" else ()
    result = preserve(command[0], evidence, *command[1:], *extra, "--chain-head", "abc123")
    assert result.returncode == 2
    assert b"--chain-head: a chain head has 64 hex digits, got 6" in result.stderr


# -- the directory's name --------------------------------------------------------------


def test_a_renamed_directory_verifies_with_a_note(evidence: Path, tmp_path: Path) -> None:
    created = evidence.name
    renamed = evidence.rename(tmp_path / "case-42-exhibit-7")
    result = verify(renamed)
    out = result.stdout.decode()
    assert result.returncode == 0, out
    assert (
        f"Note:      this directory is named 'case-42-exhibit-7' but was created as {created!r}"
        in out
    )
    code, report = _json(renamed)
    assert code == 0 and len(report["notes"]) == 1


def test_same_name_has_no_note(evidence: Path) -> None:
    code, report = _json(evidence)
    assert code == 0 and report["notes"] == []
    assert b"Note:" not in verify(evidence).stdout


# -- hard links ------------------------------------------------------------------------


def _an_artifact(evidence: Path) -> str:
    return next(r["path"] for r in journal_records(evidence) if r["type"] == "artifact")


def test_an_artifact_hard_linked_from_outside_fails(evidence: Path, tmp_path: Path) -> None:
    """Same bytes, same size: only the link count says that another name (here outside
    the evidence directory) can change it."""
    rel = _an_artifact(evidence)
    os.link(evidence / rel, tmp_path / "a-second-name")
    result = verify(evidence)
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert f"FAIL changed: {rel} (a hard link: 2 names share this file" in out


def test_an_artifact_replaced_by_a_hard_link_fails(evidence: Path, tmp_path: Path) -> None:
    rel = _an_artifact(evidence)
    outside = tmp_path / "outside-copy"
    shutil.copy(evidence / rel, outside)
    (evidence / rel).unlink()
    os.link(outside, evidence / rel)
    result = verify(evidence)
    assert result.returncode == 1 and b"a hard link: 2 names" in result.stdout


def test_a_hard_linked_manifest_fails(evidence: Path, tmp_path: Path) -> None:
    os.link(evidence / "manifest.json", tmp_path / "manifest-elsewhere.json")
    result = verify(evidence)
    assert result.returncode == 1 and b"FAIL changed: manifest.json (a hard link" in result.stdout


# -- the journal deleted, and directories that are not evidence -------------------------


def test_deleted_journal_is_tampering_not_a_usage_error(evidence: Path) -> None:
    (evidence / "custody.jsonl").unlink()
    result = verify(evidence)
    out = result.stdout.decode()
    assert result.returncode == 1, (out, result.stderr.decode())
    assert "FAIL chain: journal missing: custody.jsonl was deleted or moved" in out
    code, report = _json(evidence)
    assert code == 1 and report["status"] == "FAILED"


def test_journal_replaced_by_a_symlink_is_tampering(evidence: Path, tmp_path: Path) -> None:
    (evidence / "custody.jsonl").rename(tmp_path / "journal")
    (evidence / "custody.jsonl").symlink_to(tmp_path / "journal")
    result = verify(evidence)
    assert (
        result.returncode == 1 and b"journal replaced: custody.jsonl is a symlink" in result.stdout
    )


def test_only_the_artifacts_left_is_still_evidence(evidence: Path) -> None:
    for name in ("custody.jsonl", "manifest.json", "manifest.json.sig", "signer.pub", "SHA256SUMS"):
        (evidence / name).unlink()
    result = verify(evidence)
    assert result.returncode == 1 and b"journal missing" in result.stdout


def test_a_directory_with_none_of_the_evidence_files_is_not_evidence(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("just a folder\n")
    for path in (tmp_path, tmp_path / "empty"):
        path.mkdir(exist_ok=True)
        result = verify(path)
        assert result.returncode == 2, result.stdout.decode()
        assert b"is not an evidence directory" in result.stderr


# -- verify itself -----------------------------------------------------------------------


def test_verify_writes_nothing_inside_even_when_tmpdir_points_there(evidence: Path) -> None:
    """The scratch index goes elsewhere: had it been made inside, the walk would have
    found it as an unexpected file."""
    before = sorted((p.relative_to(evidence), p.stat().st_mtime_ns) for p in evidence.rglob("*"))
    result = verify(evidence, env={"TMPDIR": str(evidence / "artifacts")})
    assert result.returncode == 0, result.stdout.decode()
    after = sorted((p.relative_to(evidence), p.stat().st_mtime_ns) for p in evidence.rglob("*"))
    assert after == before


def test_require_intact_raises_where_verify_evidence_reports(evidence: Path) -> None:
    assert require_intact(evidence).ok
    (evidence / _an_artifact(evidence)).write_bytes(b"altered")
    assert not verify_evidence(evidence).ok  # the non-raising result
    with pytest.raises(VerificationError, match="does not verify"):
        require_intact(evidence)
