"""A hostile lab against the trust layer added with issue 14: announced batches of small
files (``begin`` records), the journal's continuation after a lost SFTP link
(``custody.continued.jsonl``) and what a seal covers.

Every test makes real evidence with the real ``preserve``, changes it as someone with
write access to the directory (and, where said, a key of their own) could, and checks
that ``verify`` fails and says what happened: a file put there later is ``unexpected``
(tampering), never an ``incomplete`` copy of a killed run nor ``ok``."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IS_ROOT, PRESERVE_ARGV, collect_json, journal_records, preserve, verify
from evidence_factory import copy_evidence, new_writer
from test_adversarial import append, transfer_to

from collectors.copy import CopyEngine
from collectors.walk import walk_entries
from manifests import canonical
from manifests.continuation import CONTINUATION, continuation_lines
from manifests.digest import sha256_bytes
from manifests.journal import SEAL_FIELD, seal_message
from manifests.signing import Signer, public_key_to_raw_b64

PASS = {"PRESERVE_KEY_PASSPHRASE": "correct horse battery staple"}
COLLECTOR = "(collector, no examiner named)"


def _report(evidence: Path, *args: str) -> dict:
    checked = verify(evidence, "--json", *args)
    assert checked.returncode in (0, 1), checked.stderr.decode()
    assert b"Traceback" not in checked.stderr
    return json.loads(checked.stdout)


def _files(report: dict) -> dict[str, dict]:
    return {p["path"]: p for p in report["files"]["problems"]}


def _tree(root: Path) -> Path:
    src = root / "src"
    for d in ("d0", "d1"):
        (src / d).mkdir(parents=True)
        for n in range(5):
            (src / d / f"f{n}.log").write_bytes(f"{d} line {n}\n".encode())
    return src


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Signer]:
    """A collection signed with a kit key the test holds (so it can play the collecting
    run itself: a continuation is signed by the collector's key)."""
    base = tmp_path_factory.mktemp("kit")
    made = preserve("keygen", "--out", base / "keys", "--name", "kit", env=PASS)
    assert made.returncode == 0, made.stderr.decode()
    key = base / "keys" / "kit.key"
    summary = collect_json(
        base / "out", "--only", "files", "--path", _tree(base), "--key", key, env=PASS
    )
    signer = Signer.from_file(key, PASS["PRESERVE_KEY_PASSPHRASE"].encode())
    return Path(summary["evidence_dir"]), signer


@pytest.fixture
def collected(kit: tuple[Path, Signer], tmp_path: Path) -> Path:
    evidence = copy_evidence(kit[0], tmp_path)
    (evidence / "custody.jsonl").chmod(0o644)
    return evidence


def _plant(evidence: Path, rel: str, data: bytes = b"planted after the collection\n") -> None:
    target = evidence / rel
    target.parent.chmod(0o755)
    target.write_bytes(data)


# -- announced batches --------------------------------------------------------------


def test_a_file_planted_behind_a_self_appointed_holders_begin_and_discarded_fails(
    collected: Path, kit: tuple[Path, Signer]
) -> None:
    """A transfer is signed by its receiver alone (a known limit), so anyone can append
    one to a key of their own. Behind it, a ``begin`` naming a file they add and a
    ``discarded`` for it made the file ``ok`` (a copy given up and left in place) and the
    evidence intact, pinned: files vouched for by the collector alone must stay so."""
    mallory = Signer.generate_ephemeral()
    planted = next(r["path"] for r in journal_records(collected) if r["type"] == "artifact")
    planted = planted.rpartition("/")[0] + "/planted.log"
    transfer_to(collected, mallory, to="Lab", **{"from": kit[1].fingerprint}, from_name=COLLECTOR)
    append(collected, "seal", sign_with=mallory, reason="transfer")
    begin = append(collected, "begin", paths=[planted])
    append(collected, "discarded", path=planted)
    append(collected, "seal", sign_with=mallory, reason="periodic")
    _plant(collected, planted)
    report = _report(collected, "--fingerprint", kit[1].fingerprint)
    assert report["status"] == "FAILED", report
    assert _files(report)[planted]["status"] == "unexpected"
    assert any(
        f"seq {begin['seq']}" in p and "after the collection's end" in p for p in report["problems"]
    ), report["problems"]


def test_a_begin_appended_after_the_end_does_not_excuse_a_planted_file(
    collected: Path, kit: tuple[Path, Signer]
) -> None:
    """Without ``discarded``: the planted file was said to be an incomplete copy of a
    killed run, in a run whose signed ``end`` says it was complete."""
    mallory = Signer.generate_ephemeral()
    planted = "artifacts/files/planted.log"
    transfer_to(collected, mallory, to="Lab", **{"from": kit[1].fingerprint}, from_name=COLLECTOR)
    append(collected, "seal", sign_with=mallory, reason="transfer")
    append(collected, "begin", paths=[planted])
    append(collected, "seal", sign_with=mallory, reason="periodic")
    _plant(collected, planted)
    report = _report(collected)
    assert _files(report)[planted]["status"] == "unexpected", report["files"]


@pytest.fixture
def unreadable_run() -> Iterator[Path]:
    """A finished run where one file of a batch could not be read: it was announced, an
    ``error`` record says why, and it was never created."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="preserve-announced-"))
    base.chmod(0o755)
    src = base / "src"
    src.mkdir()
    for name in ("a.log", "b.log", "c.log"):
        (src / name).write_text(f"{name}\n")
    (src / "b.log").chmod(0o000)
    out = base / "out"
    out.mkdir()
    drop: list[str] = []
    if IS_ROOT:  # root reads everything: the run is nobody's
        os.chown(out, 65534, 65534)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    run = subprocess.run(
        [*drop, *PRESERVE_ARGV, "--json", "-o", out, "--only", "files", "--path", src],
        capture_output=True,
        cwd=Path(__file__).parent.parent,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    assert run.returncode == 1, run.stderr.decode()  # collected, one item failed
    yield Path(json.loads(run.stdout)["evidence_dir"])
    shutil.rmtree(base)


def test_a_file_added_where_an_announced_copy_failed_is_unexpected(unreadable_run: Path) -> None:
    records = journal_records(unreadable_run)
    [begin] = [r for r in records if r["type"] == "begin"]
    stored = {r["path"] for r in records if r["type"] == "artifact"}
    [never] = [p for p in begin["paths"] if p not in stored]
    assert not (unreadable_run / never).exists()
    assert _report(unreadable_run)["files"]["problems"] == []
    _plant(unreadable_run, never)
    report = _report(unreadable_run)
    verdict = _files(report)[never]
    assert verdict["status"] == "unexpected", verdict
    assert f"seq {begin['seq']}" in verdict["detail"] and "ended" in verdict["detail"]


def test_a_partial_name_in_a_finished_run_is_a_missing_file_and_an_unexpected_one(
    collected: Path,
) -> None:
    """A stored file renamed back to its in-progress name (``%part``) in a run whose signed
    ``end`` says it finished: the run renames every copy it keeps before it ends, so this
    is not a killed run's incomplete copy but the journaled file missing and a file
    nobody vouches for, each said with what happened and what to do."""
    stored = next(r["path"] for r in journal_records(collected) if r["type"] == "artifact")
    (collected / stored).parent.chmod(0o755)
    os.rename(collected / stored, collected / f"{stored}%part")
    _plant(collected, "artifacts/files/stray.log%part")
    report = _report(collected)
    assert report["status"] == "FAILED", report
    files = _files(report)
    assert files[stored]["status"] == "missing", files
    assert "only a partial copy" in files[stored]["detail"]
    partial = files[f"{stored}%part"]
    assert partial["status"] == "unexpected", files
    assert "run that finished" in partial["detail"] and "is missing" in partial["detail"]
    assert "keep the directory as found" in partial["detail"]
    stray = files["artifacts/files/stray.log%part"]
    assert stray["status"] == "unexpected" and "no journaled file" in stray["detail"]
    assert not [f for f in files.values() if f["status"] == "incomplete"], files


# -- the continuation after a lost link ---------------------------------------------


def _lose_link(evidence: Path, signer: Signer, keep: int) -> tuple[int, int]:
    """Make ``evidence`` what a run whose link was lost leaves on the server: the
    journal's first ``keep`` lines, no manifest, and the continuation the run seals
    (``agent/sinks/reseal.py``). Returns (journal bytes, the continuation's first seq)."""
    journal = evidence / "custody.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)[:keep]
    data = b"".join(lines)
    journal.write_bytes(data)
    for name in ("manifest.json", "manifest.json.sig", "SHA256SUMS"):
        (evidence / name).unlink()
    named = {r["path"] for r in journal_records(evidence) if "path" in r}
    named |= {p for r in journal_records(evidence) for p in r.get("paths", ())}
    for path in (evidence / "artifacts").rglob("*"):  # what the server never got
        rel = str(path.relative_to(evidence))
        if path.is_file() and rel not in named:
            path.unlink()
    text, _ = continuation_lines(
        keep, sha256_bytes(lines[-1].rstrip(b"\n")), len(data), signer, lost="link down"
    )
    (evidence / CONTINUATION).write_bytes(text)
    return len(data), keep


def _last_stage_seal(evidence: Path) -> int:
    """Lines up to the seal after the files stage (what the server held)."""
    records = journal_records(evidence)
    return 1 + max(r["seq"] for r in records if r.get("reason", "").startswith("after stage"))


def test_a_genuine_continuation_verifies_as_a_proven_prefix(
    collected: Path, kit: tuple[Path, Signer]
) -> None:
    _lose_link(collected, kit[1], _last_stage_seal(collected))
    report = _report(collected, "--fingerprint", kit[1].fingerprint)
    assert report["seals"][-1]["reason"] == "after the link was lost"
    assert [p for p in report["problems"] if "did not finish" not in p] == []
    assert {p["status"] for p in report["files"]["problems"]} <= {"incomplete"}


def _chained(
    lines: list[bytes], type_: str, sign_with: Signer | None = None, **fields: object
) -> None:
    """One more record chained to ``lines`` (a seal signed by ``sign_with``)."""
    last = json.loads(lines[-1])
    record: dict = {"seq": last["seq"] + 1, "prev": sha256_bytes(lines[-1]), "type": type_}
    record.update(fields)
    if sign_with is not None:
        record["signer"] = sign_with.fingerprint
        record[SEAL_FIELD] = base64.b64encode(sign_with.sign(seal_message(record))).decode()
    lines.append(canonical.dumps(record))


def test_a_continuation_carrying_a_transfer_and_more_is_not_read(
    collected: Path, kit: tuple[Path, Signer]
) -> None:
    """The continuation is the run's own two lines. One with a transfer to another key
    in it would let anyone choose where the collector's journal stops (hiding the
    sealed records after that point) and add what they like behind it."""
    keep = _last_stage_seal(collected) - 3  # cut before the stage's last records
    _, seq = _lose_link(collected, kit[1], keep)
    path = collected / CONTINUATION
    lines = path.read_bytes().splitlines()[:1]  # the 'continued' record, not its seal
    mallory = Signer.generate_ephemeral()
    key = public_key_to_raw_b64(mallory.public_key)
    _chained(
        lines,
        "transfer",
        to="Lab",
        public_key=key,
        fingerprint=mallory.fingerprint,
        **{"from": kit[1].fingerprint},
        from_name=COLLECTOR,
    )
    _chained(lines, "seal", mallory, reason="transfer")
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = _report(collected)
    assert any(CONTINUATION in p and "was not read" in p for p in report["problems"]), report
    assert not any(s["seq"] >= seq for s in report["seals"]), report["seals"]
    assert len(report["holders"]) == 1


def test_a_continuation_appended_twice_is_not_read(
    collected: Path, kit: tuple[Path, Signer]
) -> None:
    _lose_link(collected, kit[1], _last_stage_seal(collected))
    path = collected / CONTINUATION
    path.write_bytes(path.read_bytes() * 2)
    report = _report(collected)
    assert any(CONTINUATION in p and "was not read" in p for p in report["problems"]), report


def test_a_journal_cut_below_what_its_continuation_continues_fails(
    collected: Path, kit: tuple[Path, Signer]
) -> None:
    size, _ = _lose_link(collected, kit[1], _last_stage_seal(collected))
    journal = collected / "custody.jsonl"
    journal.write_bytes(journal.read_bytes()[: size - 200])
    report = _report(collected)
    assert report["status"] == "FAILED"
    assert any("cut short" in p for p in report["problems"]), report["problems"]


def test_records_past_the_continued_bytes_are_no_evidence_for_a_planted_file(
    collected: Path, kit: tuple[Path, Signer]
) -> None:
    """Both files disagree: the journal holds lines after the bytes the continuation
    continues. They are outside the chain, so what they name is unexpected."""
    _lose_link(collected, kit[1], _last_stage_seal(collected))
    planted = "artifacts/files/planted.log"
    data = b"planted after the collection\n"
    journal = collected / "custody.jsonl"
    lines = journal.read_bytes().splitlines()
    record = {
        "seq": len(lines),
        "prev": sha256_bytes(lines[-1]),
        "type": "artifact",
        "path": planted,
        "size": len(data),
        "sha256": sha256_bytes(data),
    }
    with open(journal, "ab") as f:
        f.write(json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    _plant(collected, planted, data)
    report = _report(collected)
    assert _files(report)[planted]["status"] == "unexpected"
    assert any("1 record" in n and "nothing vouches" in n for n in report["notes"]), report["notes"]


def test_custody_of_a_continued_journal_appends_to_the_continuation(
    collected: Path, kit: tuple[Path, Signer], tmp_path: Path
) -> None:
    """A finished run whose last seal went out but was never acknowledged before the link
    was lost: the run seals the whole journal in its continuation. ``custody`` compared
    the chain's bytes (journal and continuation) with ``custody.jsonl`` alone and refused
    with "changed while it was being verified"; the transfer goes into the file the chain
    ends in, twice over, and the evidence still verifies with both holders."""
    journal = collected / "custody.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    text, _ = continuation_lines(
        len(lines), sha256_bytes(lines[-1].rstrip(b"\n")), len(b"".join(lines)), kit[1]
    )
    (collected / CONTINUATION).write_bytes(text)
    before = journal.read_bytes()
    assert _report(collected, "--fingerprint", kit[1].fingerprint)["status"] == "intact"
    for name in ("lab", "court"):
        made = preserve("keygen", "--out", tmp_path / "keys", "--name", name, env=PASS)
        assert made.returncode == 0, made.stderr.decode()
    heads = []
    for name, key in (("Lab", "lab"), ("Court", "court")):
        moved = preserve(
            "custody", collected, "--to", name, "--key", tmp_path / f"keys/{key}.key", env=PASS
        )
        assert moved.returncode == 0, moved.stderr.decode()
        heads.append(moved.stdout.decode().split("chain head:")[1].split()[0])
    assert journal.read_bytes() == before  # outside the chain past the continued bytes
    report = _report(collected, "--fingerprint", kit[1].fingerprint, "--chain-head", heads[-1])
    assert report["status"] == "intact", report["problems"]
    assert report["chain_pin"] == "matched"
    assert [h["name"] for h in report["holders"]] == [COLLECTOR, "Lab", "Court"]
    kinds = [
        json.loads(line)["type"] for line in (collected / CONTINUATION).read_bytes().splitlines()
    ]
    assert kinds == ["continued", "seal", "transfer", "seal", "transfer", "seal"]


def test_a_file_journaled_after_the_last_seal_is_not_ok(collected: Path) -> None:
    """A killed run's last records are unsealed, and anyone can append more (the chain's
    hashes need no key): a planted file with an artifact record of its own there was
    ``ok``. Each such file is ``unsealed``: matching a record nobody signed."""
    journal = collected / "custody.jsonl"
    records = journal_records(collected)
    stage = next(r["seq"] for r in records if r.get("reason", "").startswith("after stage"))
    journal.write_bytes(b"".join(journal.read_bytes().splitlines(True)[:stage]))
    for name in ("manifest.json", "manifest.json.sig", "SHA256SUMS"):
        (collected / name).unlink()
    planted, data = "artifacts/files/planted.log", b"planted after the collection\n"
    append(collected, "artifact", path=planted, size=len(data), sha256=sha256_bytes(data))
    _plant(collected, planted, data)
    report = _report(collected)
    files = _files(report)
    assert files[planted]["status"] == "unsealed", files[planted]
    copied = [r["path"] for r in records[:stage] if r["type"] == "artifact"]
    assert copied and all(files[p]["status"] == "unsealed" for p in copied), files
    assert "no signature vouches for it" in files[planted]["detail"]


def test_a_file_created_under_an_announced_name_by_someone_else(tmp_path: Path) -> None:
    """Another process writes into the evidence directory while a batch is copied and
    takes a name the batch announced. The rest of the batch was lost (one 'internal
    error' naming another file); now the collision is said, the source is copied under
    the next name, and ``verify`` names the intruder's file unexpected."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(4):
        (src / f"f{n}.log").write_text(f"line {n}\n")
    writer = new_writer(tmp_path)
    taken = writer.root / "artifacts/files/src/f1.log"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"planted during the run\n")
    engine = CopyEngine(writer)
    try:
        listed = list(walk_entries(os.fsencode(src), lambda path, e: None))
        engine.submit_listed(
            listed, lambda p: "artifacts/files/src/" + os.path.basename(p).decode(), "files"
        )
        engine.drain()
    finally:
        engine.shutdown()
    writer.close("complete", {}, {})
    records = journal_records(writer.root)
    assert [r["type"] for r in records].count("begin") == 1
    copied = {r["source"]["path"]: r["path"] for r in records if r["type"] == "artifact"}
    assert sorted(copied) == sorted(str(src / f"f{n}.log") for n in range(4)), records
    assert copied[str(src / "f1.log")] != "artifacts/files/src/f1.log"
    [error] = [r for r in records if r["type"] == "error"]
    assert "already held artifacts/files/src/f1.log" in error["reason"]
    assert error["source"]["path"] == str(src / "f1.log")
    files = _files(_report(writer.root))
    assert files["artifacts/files/src/f1.log"]["status"] == "unexpected"
    stored = {p: v for p, v in files.items() if p.startswith("artifacts/")}
    assert not [f for f in stored.values() if f["status"] in ("changed", "missing")], files
