"""The evidence writer and its local sink: the one way into an evidence directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PRESERVE_ARGV, journal_records, verify

from manifests.errors import EvidenceLostError, JournalChangedError
from manifests.signing import Signer
from manifests.sink import LocalDirSink
from manifests.transfer import Handover, append_under_custody
from manifests.verify import verify_evidence
from manifests.writer import EvidenceWriter


def test_sink_refuses_to_recreate_a_deleted_evidence_directory(tmp_path: Path) -> None:
    sink = LocalDirSink.create_new(tmp_path, "host-1")
    sink.create("artifacts/a/one").close()
    shutil.rmtree(tmp_path / "host-1")
    with pytest.raises(EvidenceLostError, match="was lost: the directory was deleted"):
        sink.create("artifacts/b/two")
    with pytest.raises(EvidenceLostError):
        sink.sync()
    assert not (tmp_path / "host-1").exists()
    sink.close()


def test_sink_notices_a_directory_replaced_under_its_name(tmp_path: Path) -> None:
    sink = LocalDirSink.create_new(tmp_path, "host-1")
    (tmp_path / "host-1").rename(tmp_path / "moved")
    (tmp_path / "host-1").mkdir()  # an attacker's (or a confused user's) replacement
    with pytest.raises(EvidenceLostError, match="another directory now has its name"):
        sink.check()
    sink.close()


def test_sink_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    sink = LocalDirSink.create_new(tmp_path, "host-1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "host-1" / "artifacts")
    with pytest.raises(OSError):
        sink.create("artifacts/x").close()
    assert list(elsewhere.iterdir()) == []
    sink.close()


def test_sink_stores_paths_deeper_than_path_max(tmp_path: Path) -> None:
    sink = LocalDirSink.create_new(tmp_path, "host-1")
    rel = "/".join(["d" * 200] * 40) + "/file"  # 8 KB: twice PATH_MAX
    f = sink.create(rel)
    f.write(b"deep\n")
    f.finish(5)
    f.close()
    assert sink.exists(rel)
    sink.close()


def test_killed_collection_directory_deleted_mid_run_exits_3(tmp_path: Path) -> None:
    """The output vanishing under the run is noticed, reported in one line with its own
    exit code, and never 'repaired' by recreating the tree."""
    src = tmp_path / "src"
    for d in range(40):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(250):
            (src / f"d{d}" / f"f{f}").write_bytes(b"x" * 512)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*PRESERVE_ARGV, "-o", str(out), "--only", "files", "--path", str(src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    evidence = None
    while time.monotonic() < deadline and evidence is None:
        for candidate in out.glob("*/artifacts/files"):
            evidence = candidate.parent.parent
        time.sleep(0.005)
    assert evidence is not None, "the collection never started storing files"
    while evidence.exists() and time.monotonic() < deadline:  # rm -rf racing the writer
        shutil.rmtree(evidence, ignore_errors=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err.decode()
    lines = [line for line in err.decode().splitlines() if "lost" in line]
    assert len(lines) == 1 and str(evidence) in lines[0], err.decode()
    assert "Traceback" not in err.decode()
    assert not evidence.exists(), "the evidence directory was recreated"


def test_custody_and_release_share_one_concurrency_check(tmp_path: Path) -> None:
    signer = Signer.generate_ephemeral()
    evidence = _sealed_evidence(tmp_path)
    result = verify_evidence(evidence)
    assert result.ok, result.problems
    # Someone else appends after the check: the append is refused, nothing is written.
    with open(evidence / "custody.jsonl", "ab") as f:
        f.write(b'{"seq":999}\n')
    before = (evidence / "custody.jsonl").read_bytes()
    with pytest.raises(JournalChangedError, match="changed while it was being verified"):
        append_under_custody(evidence, result, signer, "transfer", Handover("lab"))
    assert (evidence / "custody.jsonl").read_bytes() == before


def test_transfer_through_the_writer_verifies(tmp_path: Path) -> None:
    evidence = _sealed_evidence(tmp_path)
    result = verify_evidence(evidence)
    lab = Signer.generate_ephemeral()
    appended = append_under_custody(evidence, result, lab, "transfer", Handover("lab", "bag 7"))
    assert appended.transferred
    again = verify_evidence(evidence)
    assert again.ok, again.problems
    assert [h.name for h in again.holders][-1] == "lab"
    assert again.chain_head == appended.chain_head
    assert journal_records(evidence)[-1]["signer"] == lab.fingerprint
    assert verify(evidence).returncode == 0


def _sealed_evidence(parent: Path) -> Path:
    """A real, tiny collection made through the command line."""
    src = parent / "src"
    src.mkdir(parents=True)
    (src / "a").write_text("a\n")
    out = parent / "out"
    subprocess.run(
        [*PRESERVE_ARGV, "-o", str(out), "-q", "--only", "files", "--path", str(src)],
        check=True,
        capture_output=True,
    )
    [evidence] = out.iterdir()
    return evidence


def test_writer_creates_a_new_directory_each_time(tmp_path: Path) -> None:
    signer = Signer.generate_ephemeral()
    first = EvidenceWriter.create(tmp_path, "host-x", signer)
    second = EvidenceWriter.create(tmp_path, "host-x", signer)
    assert first.root.name == "host-x" and second.root.name == "host-x-2"
    first.finish()
    second.finish()
