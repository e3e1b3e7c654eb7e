"""Real tampering: every kind of change to an evidence directory makes ``verify`` fail."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import collect_json, verify
from evidence_factory import copy_evidence, forge, make_source_tree

from manifests.continuation import CONTINUATION, continuation_lines
from manifests.signing import Signer


def all_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


def failed(evidence: Path, *args: str) -> str:
    result = verify(evidence, *args)
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert "FAIL" in out
    return out


def test_pristine_copy_verifies(evidence: Path, pristine: tuple[Path, str]) -> None:
    result = verify(evidence, "--fingerprint", pristine[1])
    assert result.returncode == 0, result.stdout.decode()
    assert "pinned, matches" in result.stdout.decode()


def test_unpinned_run_says_so(evidence: Path) -> None:
    out = verify(evidence).stdout.decode()
    assert "NOT PINNED" in out


def test_every_file_flip_one_byte(pristine: tuple[Path, str], tmp_path: Path) -> None:
    files = all_files(pristine[0])
    assert len(files) >= 10
    for n, rel in enumerate(files):
        ev = copy_evidence(pristine[0], tmp_path / f"flip{n}")
        target = ev / rel
        os.chmod(target, 0o644)
        data = bytearray(target.read_bytes())
        if not data:  # an empty artifact: adding a byte is the smallest change
            data = bytearray(b"x")
        else:
            data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        out = failed(ev)
        name = rel if rel != "custody.jsonl" else "chain"
        assert name in out, (rel, out)


def test_every_file_deleted(pristine: tuple[Path, str], tmp_path: Path) -> None:
    for n, rel in enumerate(all_files(pristine[0])):
        ev = copy_evidence(pristine[0], tmp_path / f"del{n}")
        (ev / rel).unlink()
        out = failed(ev)  # the journal too: tampering (exit 1), not "not evidence" (2)
        assert rel in out, (rel, out)


@pytest.mark.parametrize("where", [".", "artifacts", "artifacts/files", "artifacts/new/dir"])
def test_added_file_anywhere(evidence: Path, where: str) -> None:
    (evidence / where).mkdir(parents=True, exist_ok=True)
    (evidence / where / "planted.txt").write_text("not collected\n")
    out = failed(evidence)
    assert "unexpected" in out and "planted.txt" in out


def test_added_symlink_and_empty_dir(evidence: Path) -> None:
    (evidence / "artifacts" / "link").symlink_to("/etc/passwd")
    (evidence / "artifacts" / "emptydir").mkdir()
    out = failed(evidence)
    assert "artifacts/link" in out and "artifacts/emptydir" in out


def _journal_lines(evidence: Path) -> list[bytes]:
    return (evidence / "custody.jsonl").read_bytes().split(b"\n")[:-1]


def _write_journal(evidence: Path, lines: list[bytes], newline: bool = True) -> None:
    (evidence / "custody.jsonl").write_bytes(b"\n".join(lines) + (b"\n" if newline else b""))


def test_swapped_journal_lines(evidence: Path) -> None:
    lines = _journal_lines(evidence)
    lines[3], lines[4] = lines[4], lines[3]
    _write_journal(evidence, lines)
    assert "chain broken at seq 3" in failed(evidence)


def test_dropped_journal_line(evidence: Path) -> None:
    lines = _journal_lines(evidence)
    del lines[5]
    _write_journal(evidence, lines)
    assert "chain broken at seq 5" in failed(evidence)


def test_dropped_last_lines_are_caught_by_the_manifest(evidence: Path) -> None:
    lines = _journal_lines(evidence)
    _write_journal(evidence, lines[:-3])
    out = failed(evidence)
    assert "manifest.json" in out


@pytest.mark.parametrize("cut", [1, 10, 200])
def test_truncated_journal(evidence: Path, cut: int) -> None:
    path = evidence / "custody.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    out = failed(evidence)
    assert "torn last line" in out or "chain" in out


def test_reformatted_line_is_not_canonical(evidence: Path) -> None:
    lines = _journal_lines(evidence)
    lines[2] = lines[2].replace(b'":', b'": ', 1)
    _write_journal(evidence, lines)
    assert "canonical" in failed(evidence)


def test_duplicate_key_line_is_refused(evidence: Path) -> None:
    lines = _journal_lines(evidence)
    lines[2] = lines[2][:-1] + b',"type":"artifact"}'
    _write_journal(evidence, lines)
    assert "duplicate key" in failed(evidence)


def test_forged_with_another_key_is_caught_when_pinned(
    evidence: Path, pristine: tuple[Path, str]
) -> None:
    forge(evidence, Signer.generate_ephemeral())
    unpinned = verify(evidence)
    assert unpinned.returncode == 0, unpinned.stdout.decode()  # self-consistent forgery...
    assert b"NOT PINNED" in unpinned.stdout
    out = failed(evidence, "--fingerprint", pristine[1])  # ...caught once pinned
    assert "signer mismatch" in out


def test_replaced_signer_pub_only(evidence: Path) -> None:
    from manifests.signing import public_key_pem

    other = Signer.generate_ephemeral()
    (evidence / "signer.pub").write_bytes(public_key_pem(other.public_key))
    assert "signer.pub" in failed(evidence)


def test_seal_signed_by_wrong_key(evidence: Path, pristine: tuple[Path, str]) -> None:
    """Re-signing only the seals (not the start record) is a bad signature."""
    import base64
    import json

    from manifests import canonical
    from manifests.journal import seal_message

    mallory = Signer.generate_ephemeral()
    lines = _journal_lines(evidence)
    last = json.loads(lines[-1])
    last["signer"] = mallory.fingerprint
    last.pop("signature")
    last["signature"] = base64.b64encode(mallory.sign(seal_message(last))).decode()
    lines[-1] = canonical.dumps(last)
    _write_journal(evidence, lines)
    assert "bad signature" in failed(evidence)


def test_journal_path_escaping_the_directory_is_tampering(tmp_path: Path) -> None:
    """A forged journal that names ``../`` or absolute paths is reported, never opened."""
    src = make_source_tree(tmp_path)
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    secret = tmp_path / "outside.txt"
    secret.write_text("outside the evidence\n")

    def point_outside(records: list[dict]) -> None:
        artifacts = [r for r in records if r["type"] == "artifact"]
        artifacts[0]["path"] = "../../outside.txt"
        artifacts[1]["path"] = str(secret)

    forge(evidence, Signer.generate_ephemeral(), point_outside)
    out = failed(evidence)
    assert out.count("tampering") >= 2
    assert "outside the evidence directory" in out


def _plant_continuation(evidence: Path, data: bytes) -> Path:
    planted = evidence / CONTINUATION
    planted.write_bytes(data)
    return planted


def test_a_planted_continuation_signed_by_another_key_fails(evidence: Path) -> None:
    journal = (evidence / "custody.jsonl").read_bytes()
    last = journal.rstrip(b"\n").rpartition(b"\n")[2]
    seq, head = json.loads(last)["seq"] + 1, hashlib.sha256(last).hexdigest()
    data, _ = continuation_lines(seq, head, len(journal), Signer.generate_ephemeral())
    _plant_continuation(evidence, data)
    out = failed(evidence)
    assert f"bad signature on seal at seq {seq + 1}" in out
    assert "continues in custody.continued.jsonl" in out


def test_a_planted_continuation_cutting_a_line_breaks_the_chain(evidence: Path) -> None:
    journal = (evidence / "custody.jsonl").read_bytes()
    data, _ = continuation_lines(3, "0" * 64, len(journal) - 5, Signer.generate_ephemeral())
    _plant_continuation(evidence, data)
    assert "chain broken" in failed(evidence)


def test_a_continuation_that_is_a_symlink_is_not_read(evidence: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_bytes(b"{}\n")
    (evidence / CONTINUATION).symlink_to(tmp_path / "elsewhere")
    assert f"{CONTINUATION} is not a regular, singly linked file" in failed(evidence)
