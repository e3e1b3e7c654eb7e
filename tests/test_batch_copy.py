"""Small files copied in batches: one ``begin`` record announces a directory's batch, the
files are written under their final names, and a run killed mid-batch still leaves
every unfinished copy named (``verify``: incomplete), never passed off as evidence."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

from conftest import PRESERVE_ARGV, ROOT, collect_json, journal_records, verify
from evidence_factory import new_writer

from collectors.batchcopy import BATCH_FILES


def _tree(root: Path, dirs: int, files: int) -> Path:
    src = root / "src"
    for d in range(dirs):
        (src / f"d{d}").mkdir(parents=True)
        for n in range(files):
            (src / f"d{d}" / f"f{n:04d}.log").write_bytes(b"x" * (100 + n))
    return src


def _verify_json(evidence: Path) -> dict:
    return json.loads(verify(evidence, "--json").stdout)


def test_a_directory_of_small_files_is_announced_in_batches_and_stored_under_final_names(
    tmp_path: Path,
) -> None:
    src = _tree(tmp_path, 2, 100)
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    records = journal_records(evidence)
    begins = [r for r in records if r["type"] == "begin"]
    artifacts = [r for r in records if r["type"] == "artifact" and r["collector"] == "files"]
    assert len(artifacts) == 200
    # One announcement a batch (100 files in a directory: 2 batches), never one a file.
    assert len(begins) == 2 * -(-100 // BATCH_FILES)
    announced = {p for r in begins for p in r["paths"]}
    assert {a["path"] for a in artifacts} == announced
    for record in begins:  # each announcement comes before the records of its files
        later = {a["path"] for a in artifacts if a["seq"] > record["seq"]}
        assert set(record["paths"]) <= later
    stored = [p for p in (evidence / "artifacts").rglob("*") if p.is_file()]
    assert not [p for p in stored if p.name.endswith("%part")]
    assert {stat.S_IMODE(p.stat().st_mode) for p in stored} == {0o444}
    assert verify(evidence, "--fingerprint", summary["fingerprint"]).returncode == 0


def test_a_journal_cut_after_an_announcement_names_each_copied_file_incomplete(
    tmp_path: Path,
) -> None:
    """The state a kill leaves between a batch's files and its records: the files are
    there, complete, announced and not journaled. Each is an incomplete copy."""
    src = _tree(tmp_path, 1, 10)
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    for name in ("SHA256SUMS", "manifest.json", "manifest.json.sig"):
        (evidence / name).unlink()
    journal = evidence / "custody.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if b'"type":"begin"' in line) + 1
    journal.chmod(0o644)
    journal.write_bytes(b"".join(lines[:cut]))
    report = _verify_json(evidence)
    problems = [p for p in report["files"]["problems"] if p["path"] != "collection.log"]
    assert len(problems) == 10, problems
    assert {p["status"] for p in problems} == {"incomplete"}
    assert all(p["detail"].startswith("incomplete copy from a killed run (seq") for p in problems)


def test_sigkill_mid_batch_leaves_every_unjournaled_copy_named_incomplete(
    tmp_path: Path,
) -> None:
    """Real kills while thousands of small files are copied: whatever moment the kill
    lands, each file there without an artifact record is announced (incomplete), none is
    unexpected, and each journaled one is intact. At least one kill lands mid-batch."""
    src = _tree(tmp_path, 3, 1500)
    mid_batch = 0
    for attempt in range(6):
        out = tmp_path / f"out{attempt}"
        proc = subprocess.Popen(
            [*PRESERVE_ARGV, "-o", out, "--only", "files", "--path", src],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            journal = None
            while time.monotonic() < deadline and proc.poll() is None:
                found = list(out.glob("*/custody.jsonl")) if out.exists() else []
                if found and found[0].read_bytes().count(b'"type":"begin"') >= 3 + 4 * attempt:
                    journal = found[0]
                    break
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert journal is not None, "the run ended before it could be killed"
        report = _verify_json(journal.parent)
        problems = report["files"]["problems"]
        statuses = {p["status"] for p in problems}
        # (a copy journaled after the last seal matches its record, which nobody signed)
        assert statuses <= {"incomplete", "unsealed"}, problems
        assert report["files"]["ok"] > 0
        mid_batch += sum(
            1 for p in problems if p["path"].endswith(".log") and "/src/d" in p["path"]
        )
        if mid_batch:
            break
    assert mid_batch, "no kill landed while a batch was being written"


def test_a_seal_covers_records_appended_while_its_flush_ran(tmp_path: Path) -> None:
    """A seal vouches only for what was flushed: a record another thread journals while
    the flush runs (its file written after the flush began) gets a second flush before
    the seal is signed."""
    writer = new_writer(tmp_path)
    journal = writer.journal
    flushes: list[int] = []  # the journal's next seq when each flush began

    def flush() -> None:
        flushes.append(journal.next_seq)
        if len(flushes) == 1:  # another worker journals a copy during the first flush
            worker = threading.Thread(target=journal.append, args=("event",), daemon=True)
            worker.start()
            worker.join()

    journal._flush_evidence = flush
    seal = journal.seal("test")
    assert len(flushes) == 2
    assert flushes[-1] == seal["seq"]  # the last flush began after every sealed record
    writer.finish()


def test_append_many_chains_like_appends_and_writes_nothing_if_one_cannot_be_written(
    tmp_path: Path,
) -> None:
    writer = new_writer(tmp_path)
    journal = writer.journal
    first = journal.append_many([("event", {"n": 1}), ("event", {"n": 2})])
    assert [r["seq"] for r in first] == [first[0]["seq"], first[0]["seq"] + 1]
    size = (writer.root / "custody.jsonl").stat().st_size
    head = journal.head
    try:
        journal.append_many([("event", {"n": 3}), ("event", {"bad": 1.5})])
    except TypeError:
        pass
    else:
        raise AssertionError("a float was journaled")
    assert (writer.root / "custody.jsonl").stat().st_size == size
    assert journal.head == head
    journal.seal("test")
    writer.finish()
    result = _verify_json(writer.root)
    assert not any("chain" in p or "signature" in p for p in result["problems"]), result
