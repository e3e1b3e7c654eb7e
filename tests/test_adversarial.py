"""An attacker's view of the trust layer: hostile evidence directories and hostile hosts.

Each test builds a real evidence directory with the real CLI, then does what someone with
write access to it (but not the collector's private key) could do, and checks that
``verify`` still says the right thing: exit 1 with a clean one-line FAIL, never exit 0,
never a traceback, never a hang and never unbounded memory."""

from __future__ import annotations

import base64
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, journal_records, preserve, verify
from evidence_factory import copy_evidence, forge, new_writer

from agent._cli import main as preserve_main
from agent.commands import custody as custody_module
from collectors.copy import CopyEngine
from collectors.walk import walk_entries
from manifests import canonical, verify_files
from manifests import verify as verify_module
from manifests.digest import sha256_bytes
from manifests.journal import SEAL_FIELD, seal_message
from manifests.signing import Signer, grouped, public_key_to_raw_b64

_PASS = {"PRESERVE_KEY_PASSPHRASE": "correct horse battery staple"}


def _lines(evidence: Path) -> list[bytes]:
    return (evidence / "custody.jsonl").read_bytes().splitlines()


def append_raw(evidence: Path, *raw: bytes) -> None:
    """Append lines as they are, without any chaining."""
    with open(evidence / "custody.jsonl", "ab") as f:
        for line in raw:
            f.write(line + b"\n")


def append(evidence: Path, type_: str, sign_with: Signer | None = None, **fields: object) -> dict:
    """Append one correctly chained record (a seal is signed by ``sign_with``)."""
    lines = _lines(evidence)
    record: dict = {"seq": len(lines), "prev": sha256_bytes(lines[-1]), "type": type_, **fields}
    if sign_with is not None:
        record["signer"] = sign_with.fingerprint
        record[SEAL_FIELD] = base64.b64encode(sign_with.sign(seal_message(record))).decode()
    append_raw(evidence, canonical.dumps(record))
    return record


def transfer_to(evidence: Path, signer: Signer, to: str = "Mallory", **fields: object) -> None:
    fields = {"fingerprint": signer.fingerprint, **fields}
    append(
        evidence, "transfer", to=to, public_key=public_key_to_raw_b64(signer.public_key), **fields
    )


def fails_cleanly(evidence: Path, *args: str, timeout: float = 60) -> str:
    result = verify(evidence, *args, timeout=timeout)
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert result.returncode == 1, (out, err)
    assert "FAIL" in out
    return out


# -- wrongly typed or hostile values in appended records --------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "seal", SEAL_FIELD: 5, "signer": "x"},
        {"type": "seal", SEAL_FIELD: ["AAAA"], "signer": "x"},
        {"type": "artifact", "path": "artifacts/zz", "size": "abc", "sha256": "0" * 64},
        {"type": "artifact", "path": "artifacts/zz", "size": [1], "sha256": "0" * 64},
        {"type": "transfer", "public_key": 5},
    ],
    ids=["int-signature", "list-signature", "str-size", "list-size", "int-key"],
)
def test_wrongly_typed_fields_fail_cleanly(evidence: Path, fields: dict) -> None:
    fields = dict(fields)
    append(evidence, fields.pop("type"), **fields)
    fails_cleanly(evidence)


def test_deeply_nested_journal_line_fails_cleanly(evidence: Path) -> None:
    append_raw(evidence, b"[" * 100_000 + b"]" * 100_000)
    assert "chain broken" in fails_cleanly(evidence)


def test_deeply_nested_manifest_fails_cleanly(evidence: Path) -> None:
    (evidence / "manifest.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    assert "manifest.json" in fails_cleanly(evidence)


# -- memory: nothing hostile is read whole --------------------------------------------

_HUGE = 768 * 1024**2  # sparse: no disk, but reading it whole needs 768 MiB of memory
_CAP = 512 * 1024**2


def verify_capped(evidence: Path) -> subprocess.CompletedProcess[bytes]:
    """``verify`` with its address space capped, so an unbounded read fails loudly here
    instead of pushing the test machine into swap."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (_CAP, _CAP))

    code = "import sys; from agent.commands.verify import main; sys.argv[0]='verify'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, str(evidence)],
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
        cwd=ROOT,
        timeout=60,
        preexec_fn=cap,
    )


@pytest.mark.parametrize(
    "name", ["custody.jsonl", "manifest.json", "manifest.json.sig", "signer.pub", "SHA256SUMS"]
)
def test_huge_sparse_file_is_not_read_into_memory(evidence: Path, name: str) -> None:
    target = evidence / name
    os.chmod(target, 0o644)
    with open(target, "ab") as f:
        f.truncate(target.stat().st_size + _HUGE)
    result = verify_capped(evidence)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in err and "MemoryError" not in err, err
    assert result.returncode == 1, (out, err)
    assert "FAIL" in out


# -- what verify prints: hostile names must not drive the terminal -------------------


def test_hostile_names_cannot_forge_verify_output(evidence: Path) -> None:
    """File names and journal strings are printed: a newline could print a fake 'OK'
    line, a carriage return or an escape sequence could overwrite the FAIL on screen."""
    names = ["a\nOK: intact", "b\rOK: intact", "c\x1b[2K\x1b]0;t\x07", "d\u202eLIAF", "e\x9b2K"]
    for name in names:
        (evidence / "artifacts" / name).write_bytes(b"x")
    transfer_to(evidence, Signer.generate_ephemeral(), to="Lab\x1b[1A\rOK")
    for args in ((), ("-q",)):
        out = fails_cleanly(evidence, *args)
        assert not any(c != "\n" and not c.isprintable() for c in out), repr(out)
        assert not [line for line in out.splitlines() if line.startswith("OK")], out
        for name in names:  # each one still shown, escaped
            shown = name.encode("unicode_escape").decode("ascii")
            assert shown in out, (shown, out)


def test_forged_start_with_odd_host_fails_cleanly_when_pinned(
    evidence: Path, pristine: tuple[Path, str]
) -> None:
    """A re-signed directory is caught by the pin; its odd start record must not crash
    the report first."""

    def mutate(records: list[dict]) -> None:
        records[0]["host"] = "not a mapping"

    forge(evidence, Signer.generate_ephemeral(), mutate)
    assert "DOES NOT MATCH" in fails_cleanly(evidence, "--fingerprint", pristine[1])


# -- custody transfers: the holders verify lists must be the chain's ----------------


def test_transfer_to_a_holder_who_never_signed_is_refused(evidence: Path) -> None:
    """Without any key of Sgt Smith's, an attacker names Smith (with Smith's real public
    key) as a holder, then hands on to himself and seals: Smith never signed anything."""
    records = journal_records(evidence)
    collector = records[0]["signer"]["fingerprint"]
    smith, mallory = Signer.generate_ephemeral(), Signer.generate_ephemeral()
    transfer_to(evidence, smith, to="Sgt Smith", **{"from": collector})
    transfer_to(evidence, mallory, **{"from": smith.fingerprint}, from_name="Sgt Smith")
    append(evidence, "seal", sign_with=mallory, reason="transfer")
    assert "never sealed" in fails_cleanly(evidence)


@pytest.mark.parametrize(
    "fields",
    [
        {"from": "0" * 64},
        {"from_name": "Det. Jones"},
        {"fingerprint": "0" * 64},
    ],
    ids=["from", "from_name", "fingerprint"],
)
def test_transfer_that_lies_about_either_side_is_refused(evidence: Path, fields: dict) -> None:
    mallory = Signer.generate_ephemeral()
    collector = journal_records(evidence)[0]["signer"]["fingerprint"]
    transfer_to(evidence, mallory, **{"from": collector, **fields})
    append(evidence, "seal", sign_with=mallory, reason="transfer")
    assert "transfer at seq" in fails_cleanly(evidence)


def test_honest_transfer_still_verifies(evidence: Path, pristine: tuple[Path, str]) -> None:
    """The transfer checks accept what ``preserve custody`` writes."""
    lab = Signer.generate_ephemeral()
    collector = journal_records(evidence)[0]["signer"]["fingerprint"]
    name = "(collector, no examiner named)"
    transfer_to(evidence, lab, to="Lab", **{"from": collector}, from_name=name)
    append(evidence, "seal", sign_with=lab, reason="transfer")
    result = verify(evidence, "--fingerprint", pristine[1])
    assert result.returncode == 0, result.stdout.decode()
    # Only the collector is pinned: the later holder's whole key is shown to be checked.
    assert grouped(lab.fingerprint) in result.stdout.decode()
    assert "signed by its receiver alone" in result.stdout.decode()


def test_custody_with_a_pin_refuses_evidence_re_signed_with_another_key(
    evidence: Path, pristine: tuple[Path, str], tmp_path: Path
) -> None:
    """A whole-directory re-sign passes unpinned checks (a documented limit); the lab
    taking custody must be able to pin the collector's key from the paper form, and no
    transfer may then be recorded on the forgery."""
    keys = tmp_path / "keys"
    made = preserve("keygen", "--out", keys, "--name", "lab", env=_PASS)
    assert made.returncode == 0, made.stderr.decode()
    forge(evidence, Signer.generate_ephemeral())
    before = (evidence / "custody.jsonl").read_bytes()
    args = ("custody", evidence, "--to", "Lab", "--key", keys / "lab.key")
    moved = preserve(*args, "--fingerprint", pristine[1], env=_PASS)
    assert moved.returncode == 1, moved.stderr.decode()
    assert b"no transfer was recorded" in moved.stderr
    assert b"Traceback" not in moved.stderr
    assert (evidence / "custody.jsonl").read_bytes() == before
    honest = copy_evidence(pristine[0], tmp_path / "honest")
    moved = preserve(*args[:1], honest, *args[2:], "--fingerprint", pristine[1], env=_PASS)
    assert moved.returncode == 0, moved.stderr.decode()
    assert verify(honest, "--fingerprint", pristine[1]).returncode == 0


def test_hostile_host_file_name_cannot_drive_the_responders_terminal(tmp_path: Path) -> None:
    """A failed item's host path is printed as a warning during collection: a name with
    an escape sequence, a newline or a carriage return must be shown escaped."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "x\x1b]0;pwned\x07\nFAKE: all good\r").write_bytes(b"0123456789")
    result = preserve(
        "-o", tmp_path / "out", "--only", "files", "--path", src, "--max-file-size", "2"
    )
    err = result.stderr.decode()
    assert result.returncode == 1, err
    warning = next(line for line in err.splitlines() if "max-file-size" in line)
    assert "x\\x1b]0;pwned\\x07\\nFAKE: all good\\r" in warning, err
    assert not any(c != "\n" and not c.isprintable() for c in err), err


def test_directory_swapped_for_a_symlink_during_verify_is_not_followed(
    evidence: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race, made deterministic: right after verify has listed the directory, the
    attacker swaps ``artifacts`` for a symlink to an identical copy outside it. Hashing
    by path would then read (and vouch for) files outside the evidence directory."""
    outside = tmp_path / "outside"
    shutil.copytree(evidence / "artifacts", outside)
    listed = verify_files._walk

    def racing_walk(root: Path, *args: object):  # type: ignore[no-untyped-def]
        entries = list(listed(root, *args))
        shutil.rmtree(evidence / "artifacts")
        (evidence / "artifacts").symlink_to(outside)
        return iter(entries)

    monkeypatch.setattr(verify_files, "_walk", racing_walk)
    result = verify_module.verify_evidence(evidence)
    assert not result.ok
    assert any("replaced while" in f.detail for f in result.file_problems), result.file_problems


# -- the host side: a directory swapped for a symlink while it is being collected ------


def _swap_for_symlink(directory: Path, target: Path) -> None:
    shutil.rmtree(directory)
    directory.symlink_to(target)


def test_walk_does_not_enter_a_directory_swapped_for_a_symlink(tmp_path: Path) -> None:
    src, elsewhere = tmp_path / "src", tmp_path / "etc"
    (src / "d").mkdir(parents=True)
    (src / "a").write_bytes(b"a")
    (src / "d" / "decoy").write_bytes(b"d")
    elsewhere.mkdir()
    (elsewhere / "shadow").write_bytes(b"SECRET")
    errors: list[bytes] = []
    entries = walk_entries(os.fsencode(src), lambda path, e: errors.append(path))
    first, _ = next(entries)  # src/a: src is listed, src/d is waiting on the stack
    assert first.endswith(b"/a")
    _swap_for_symlink(src / "d", elsewhere)
    rest = [path for path, _ in entries]
    assert rest == [] and errors == [os.fsencode(src / "d")], (rest, errors)


@pytest.mark.parametrize("swapped", ["d", "d/e"])
def test_copy_refuses_a_file_whose_directory_was_swapped_after_listing(
    tmp_path: Path, swapped: str
) -> None:
    """The walk listed src/d/e/shadow (a harmless file); before the queued copy ran, the
    attacker made src/d (or src/d/e) a symlink to a directory holding a secret of the
    same name. Opening by path would follow it and store the secret as src/d/e/shadow."""
    src, elsewhere = tmp_path / "src", tmp_path / "etc"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "e" / "shadow").write_bytes(b"harmless")
    (elsewhere / "e").mkdir(parents=True)
    (elsewhere / "e" / "shadow").write_bytes(b"SECRET root:$6$...")
    listed = list(walk_entries(os.fsencode(src), lambda path, e: None))
    _swap_for_symlink(src / swapped, elsewhere if swapped == "d" else elsewhere / "e")
    writer = new_writer(tmp_path)
    root, journal = writer.root, writer.journal
    engine = CopyEngine(writer)
    try:
        for path, parent_id in listed:
            stored = engine.preserve(path, "artifacts/files/x", "files", parent_id=parent_id)
            assert stored is None
    finally:
        engine.shutdown()
        journal.close()
    assert not any(b"SECRET" in p.read_bytes() for p in root.rglob("*") if p.is_file())
    errors = [r for r in journal_records(root) if r["type"] == "error"]
    assert len(errors) == 1 and "not read" in errors[0]["reason"], errors


def test_added_tree_deeper_than_path_max_is_reported(evidence: Path) -> None:
    """A directory tree whose paths exceed PATH_MAX cannot be listed by path: it was
    silently left out of the walk, so files added down there went unreported."""
    fd = os.open(evidence / "artifacts", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(24):  # 24 x 201 bytes: beyond PATH_MAX (4096)
            os.close(os.open("f" * 250, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            os.mkdir("d" * 200, dir_fd=fd)
            deeper = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        planted = os.open("planted.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(planted, b"evidence that was never collected")
        os.close(planted)
    finally:
        os.close(fd)
    fails_cleanly(evidence)


@pytest.mark.parametrize(
    "name", ["manifest.json.sig", "manifest.json", "signer.pub", "SHA256SUMS", "artifacts/pipe"]
)
def test_fifo_in_the_evidence_does_not_hang_verify(evidence: Path, name: str) -> None:
    """A FIFO with no writer blocks whoever opens it for reading without O_NONBLOCK."""
    target = evidence / name
    if target.exists():
        target.unlink()
    os.mkfifo(target)
    fails_cleanly(evidence, timeout=20)


# -- known limits, kept visible: each xfail turns into a failure the day it is fixed ----


@pytest.mark.xfail(
    strict=True,
    reason="design limit: a transfer is signed only by its receiver (the collector's key "
    "is often ephemeral and gone), so anyone with write access can append a transfer to "
    "a key of his own and seal it; verify, even pinned, then lists him as the holder",
)
def test_self_appointed_holder_is_refused(evidence: Path, pristine: tuple[Path, str]) -> None:
    mallory = Signer.generate_ephemeral()
    collector = journal_records(evidence)[0]["signer"]["fingerprint"]
    name = "(collector, no examiner named)"
    transfer_to(evidence, mallory, to="FBI evidence unit", **{"from": collector}, from_name=name)
    append(evidence, "seal", sign_with=mallory, reason="transfer")
    fails_cleanly(evidence, "--fingerprint", pristine[1])


@pytest.mark.xfail(
    strict=True,
    reason="design limit: nothing outside the journal anchors records after the end seal, "
    "so cutting the last transfer(s) off the journal leaves a valid, shorter story",
)
def test_removed_last_transfer_is_detected(evidence: Path, pristine: tuple[Path, str]) -> None:
    lab = Signer.generate_ephemeral()
    collector = journal_records(evidence)[0]["signer"]["fingerprint"]
    name = "(collector, no examiner named)"
    before = (evidence / "custody.jsonl").read_bytes()
    transfer_to(evidence, lab, to="Lab", **{"from": collector}, from_name=name)
    append(evidence, "seal", sign_with=lab, reason="transfer")
    assert verify(evidence, "--fingerprint", pristine[1]).returncode == 0
    (evidence / "custody.jsonl").write_bytes(before)  # the lab's receipt, cut off
    fails_cleanly(evidence, "--fingerprint", pristine[1])


def test_custody_does_not_seal_a_record_slipped_in_after_its_check(
    evidence: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The race, made deterministic: a record appended between custody's verification
    and its transfer would be sealed by the new holder's key along with the transfer."""
    key = tmp_path / "lab.key"
    key.write_bytes(Signer.generate_ephemeral().private_pem(None))
    real_verify = custody_module.verify_evidence

    def verify_then_slip_in(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        result = real_verify(*args, **kwargs)
        append(evidence, "note", text="planted after the check")
        return result

    monkeypatch.setattr(custody_module, "verify_evidence", verify_then_slip_in)
    with pytest.raises(SystemExit) as outcome:
        preserve_main(["custody", str(evidence), "--to", "Lab", "--key", str(key)])
    output = capsys.readouterr().err
    assert outcome.value.code == 1, output
    assert "changed while it was being verified" in output
    assert [r["type"] for r in journal_records(evidence)[-2:]] == ["seal", "note"]


def test_custody_escapes_the_previous_holders_name(evidence: Path, tmp_path: Path) -> None:
    """The previous holder's name comes from the journal (a transfer's 'to')."""
    holder = Signer.generate_ephemeral()
    collector = journal_records(evidence)[0]["signer"]["fingerprint"]
    name = "(collector, no examiner named)"
    transfer_to(evidence, holder, to="X\x1b]0;t\x07\nOK", **{"from": collector}, from_name=name)
    append(evidence, "seal", sign_with=holder, reason="transfer")
    key = tmp_path / "lab.key"
    key.write_bytes(Signer.generate_ephemeral().private_pem(None))
    moved = preserve("custody", evidence, "--to", "Lab", "--key", key)
    out = moved.stdout.decode()
    assert moved.returncode == 0, moved.stderr.decode()
    assert "from X\\x1b]0;t\\x07\\nOK to Lab" in out, out


def test_logs_collector_passes_the_listing_directory_to_the_copy(tmp_path: Path) -> None:
    """The logs collector walks with directory identities too: a log directory swapped for
    a symlink after listing is not followed into (here: a planted 'secret' file)."""
    from collectors.context import CollectContext, Options
    from collectors.logs import LogsCollector

    logs, elsewhere = tmp_path / "logs", tmp_path / "etc"
    (logs / "app").mkdir(parents=True)
    (logs / "app" / "app.log").write_bytes(b"harmless log line\n")
    elsewhere.mkdir()
    (elsewhere / "app.log").write_bytes(b"SECRET root:$6$...")
    collector = LogsCollector()
    collector.configure(Options(log_paths=(os.fsencode(logs),)))
    writer = new_writer(tmp_path)
    root, journal = writer.root, writer.journal
    engine = CopyEngine(writer)
    ctx = CollectContext(root, journal, engine, Options(), log=None)
    source = next(s for s in collector.profile.sources if s.root == os.fsencode(logs))
    listed = list(collector._files(ctx, source))
    _swap_for_symlink(logs / "app", elsewhere)
    try:
        for path, parent_id in listed:
            collector._take(ctx, path, {}, parent_id)
        engine.drain()
    finally:
        engine.shutdown()
        journal.close()
    assert listed and all(parent_id is not None for _, parent_id in listed)
    assert not any(b"SECRET" in p.read_bytes() for p in root.rglob("*") if p.is_file())
