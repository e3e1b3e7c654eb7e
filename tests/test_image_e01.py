"""``preserve image --format e01`` on real loop devices (made here, detached after),
judged by Debian's ewf-tools: the segment files are evidence artifacts (journaled,
hashed, checked by ``verify``) and the E01 they make passes ``ewfverify``, shows the case
in ``ewfinfo`` and exports back to the device's bytes."""

# ruff: noqa: F811 (pytest fixtures imported from test_image, used as arguments)
from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, ROOT, journal_records, verify
from ewf_tools import ewfinfo, ewfverify, export_sha256, requires_ewf_tools
from test_image import (  # noqa: F401 (loops, badfs, badfs_binary: fixtures)
    BAD,
    MiB,
    _slow_image,
    _stop_after_pieces,
    badfs,
    badfs_binary,
    ext4_image,
    loops,
    needs_loop,
    of_type,
    sha256_of,
    take_image,
)

from agent.imaging.ewf_output import segment_size
from agent.imaging.output import OutputSpec
from manifests.fstype import FAT_MAX_FILE, FileSystem

pytestmark = [needs_loop, requires_ewf_tools]
Attach = Callable[..., str]
CASE = ("--case", "IR-17", "--examiner", "Dana Scully", "--note", "after isolation")


def segments_of(evidence: Path) -> list[Path]:
    return sorted((evidence / "artifacts/image").iterdir())


def assert_segments_journaled(evidence: Path, records: list[dict]) -> None:
    """Every segment file is an artifact whose SHA-256 and size are the file's."""
    stored = {
        r["path"]: r for r in of_type(records, "artifact") if r.get("kind") == "image-segment"
    }
    files = segments_of(evidence)
    assert sorted(stored) == [f"artifacts/image/{p.name}" for p in files]
    for path in files:
        record = stored[f"artifacts/image/{path.name}"]
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record["size"] == path.stat().st_size


def test_e01_of_an_ext4_loop_device(tmp_path: Path, loops: Attach) -> None:
    device = loops(ext4_image(tmp_path))
    summary, evidence = take_image(device, tmp_path / "out", "--format", "e01", *CASE)
    first = evidence / "artifacts/image/image.E01"
    checked = ewfverify(first)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert export_sha256(first, tmp_path) == (sha256_of(device), 24 * MiB)
    info = ewfinfo(first)
    for shown in (
        "Case number:\t\tIR-17",
        "Examiner name:\t\tDana Scully",
        "Notes:\t\t\tafter isolation",
        f"Evidence number:\t{device}",
        "Number of sectors:\t49152",
    ):
        assert shown in info, (shown, info)
    records = journal_records(evidence)
    [e01], [end] = of_type(records, "image-e01"), of_type(records, "image-end")
    raw = Path(device).read_bytes()
    assert e01["md5"] == hashlib.md5(raw).hexdigest() and e01["md5"] in info
    assert e01["sha1"] == hashlib.sha1(raw).hexdigest()
    assert f"Set identifier:\t\t{e01['set_identifier']}" in info
    assert e01["sha256"] == end["sha256"] == sha256_of(device)
    assert end["complete"] is True and end["format"] == "e01"
    assert end["artifacts"] == e01["segments"] == ["artifacts/image/image.E01"]
    assert_segments_journaled(evidence, records)
    assert first.stat().st_size < 8 * MiB  # the empty blocks compressed
    assert verify(evidence, "--fingerprint", summary["fingerprint"]).returncode == 0
    # and verify sees a changed segment file like any artifact
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 1
    first.chmod(0o644)
    first.write_bytes(bytes(data))
    assert verify(evidence).returncode == 1
    assert ewfverify(first).returncode != 0


def test_split_into_segment_files(tmp_path: Path, loops: Attach) -> None:
    device = loops(ext4_image(tmp_path, 16))
    summary, evidence = take_image(
        device, tmp_path / "out", "--format", "e01", "--split", "1M", *CASE
    )
    files = segments_of(evidence)
    assert [p.name for p in files] == ["image.E01", "image.E02", "image.E03", "image.E04"]
    assert all(p.stat().st_size <= MiB for p in files)
    assert ewfverify(files[0]).returncode == 0
    assert export_sha256(files[0], tmp_path)[0] == sha256_of(device)
    records = journal_records(evidence)
    assert_segments_journaled(evidence, records)
    [end] = of_type(records, "image-end")
    assert end["artifacts"] == [f"artifacts/image/{p.name}" for p in files]
    assert verify(evidence).returncode == 0


def test_bad_sectors_are_in_the_error2_section(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach
) -> None:
    backing = ext4_image(tmp_path)
    device = loops(badfs(backing, BAD))
    _, evidence = take_image(device, tmp_path / "out", "--format", "e01", *CASE, expect=(1,))
    first = evidence / "artifacts/image/image.E01"
    assert ewfverify(first).returncode == 0  # the MD5 is of the bytes stored: zeros there
    expected = bytearray(backing.read_bytes())
    for offset, length in BAD:
        expected[offset : offset + length] = bytes(length)
    assert export_sha256(first, tmp_path)[0] == hashlib.sha256(expected).hexdigest()
    info = ewfinfo(first)
    sectors = [(offset // 512, length // 512) for offset, length in BAD]
    assert sectors == [(2048, 8), (10241, 1), (10244, 3), (47104, 128)]
    assert "total number: 4" in info, info
    for start, count in sectors:
        assert f"at sector(s): {start} - {start + count - 1} number: {count}" in info
    [e01] = of_type(journal_records(evidence), "image-e01")
    assert e01["bad_sectors"] == [list(s) for s in sectors]


def test_a_stopped_e01_keeps_its_segment_marked_incomplete(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach
) -> None:
    _, _, proc, out = _slow_image(tmp_path, badfs, loops, "--format", "e01", *CASE)
    evidence, records, _ = _stop_after_pieces(proc, out, 2)
    [segment] = [r for r in of_type(records, "artifact") if r.get("kind") == "image-segment"]
    assert segment["incomplete"] is True and not of_type(records, "image-e01")
    first = evidence / "artifacts/image/image.E01"
    assert "Case number:\t\tIR-17" in ewfinfo(first)  # what was read is there
    assert ewfverify(first).returncode != 0  # but it is not a whole image
    assert verify(evidence).returncode == 0  # and the evidence is intact as sealed


def test_streamed_to_an_sftp_drop_box(tmp_path: Path, loops: Attach) -> None:
    """A drop-box cannot rename or seek: every segment file is written front to back."""
    from sftp_server import SftpServer, available

    if available() is not None:
        pytest.skip(available() or "")
    device = loops(ext4_image(tmp_path, 16))
    server = SftpServer(tmp_path / "srv")
    try:
        argv = server.in_cli(
            sys.executable, "-c", PRESERVE_CODE, "image", device, "--json", "--format", "e01",
            "--split", "1M", "-o", server.url(), "--sink-host-key", server.fingerprint,
            "--sink-key", server.dropbox_key, *CASE,
        )  # fmt: skip
        done = subprocess.run(argv, capture_output=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        [evidence] = [p for p in server.evidence.iterdir() if p.is_dir()]
        first = evidence / "artifacts/image/image.E01"
        assert ewfverify(first).returncode == 0
        assert export_sha256(first, tmp_path)[0] == sha256_of(device)
        assert len(segments_of(evidence)) >= 3
        assert verify(evidence).returncode == 0
    finally:
        server.close()


def test_segment_size_stays_under_what_the_drive_holds() -> None:
    def spec(split: int | None, limit: int | None) -> OutputSpec:
        fs = FileSystem("vfat" if limit else "ext4", limit, supports_holes=limit is None)
        return OutputSpec("e01", 10 * 1024 * MiB, 512, split, fs, 64 * MiB, {})

    assert segment_size(spec(None, None)) == 1536 * MiB
    assert segment_size(spec(8 * 1024 * MiB, None)) == 8 * 1024 * MiB
    assert segment_size(spec(8 * 1024 * MiB, FAT_MAX_FILE)) < FAT_MAX_FILE
    assert segment_size(spec(100 * MiB, FAT_MAX_FILE)) == 100 * MiB
