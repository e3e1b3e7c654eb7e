"""The E01 writer (agent/imaging/ewf.py) judged by Debian's ewf-tools alone: every image
here must pass ``ewfverify`` (each chunk's checksum, the stored MD5 and SHA-1), show its
case metadata in ``ewfinfo``, and come back from ``ewfexport`` with the input's SHA-256."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from ewf_tools import ewfinfo, ewfverify, export_sha256, requires_ewf_tools
from test_image import ext4_image

from agent.imaging.ewf import CaseMetadata, EwfError, EwfResult, EwfSettingsError, EwfWriter
from agent.imaging.ewf_sections import segment_extension

pytestmark = requires_ewf_tools

META = CaseMetadata(
    case_number="2026-017",
    evidence_number="HD-1",
    description="web01 system disk",
    examiner="Dana Scully",
    notes="taken after isolation\tline two",  # the tab must not break the header
    model="QEMU HARDDISK",
    serial="QM00001",
    software_version="preserve 0.1",
    operating_system="Linux",
)


class SequentialFile:
    """A segment file that can only be appended to and closed, like an artifact going to
    an SFTP drop-box: no seek, no tell, no read back."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("xb")
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self._f.write(data)

    def close(self) -> None:
        self._f.close()
        self.closed = True


def opener(out: Path) -> tuple[list[SequentialFile], Callable[[str], SequentialFile]]:
    """An ``open_segment`` callback making files in ``out``, and the files it made."""
    files: list[SequentialFile] = []

    def open_segment(name: str) -> SequentialFile:
        files.append(SequentialFile(out / name))
        return files[-1]

    return files, open_segment


def write_e01(
    out: Path, source: bytes | Path, block: int = 1 << 20, **kw: object
) -> tuple[EwfResult, list[SequentialFile]]:
    """Image ``source`` into ``out/image.E01...`` in blocks of ``block`` bytes."""
    out.mkdir(exist_ok=True)
    files, open_segment = opener(out)

    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    writer = EwfWriter(open_segment, size, META, **kw)  # type: ignore[arg-type]
    if isinstance(source, bytes):
        for i in range(0, len(source), block):
            writer.write(source[i : i + block])
    else:
        with source.open("rb") as f:
            while data := f.read(block):
                writer.write(data)
    return writer.close(), files


def assert_verifies(first: Path, expected: bytes, scratch: Path) -> None:
    result = ewfverify(first)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ewfverify: SUCCESS" in result.stdout
    assert export_sha256(first, scratch) == (hashlib.sha256(expected).hexdigest(), len(expected))


def mixed_data(size: int, seed: int = 17) -> bytes:
    """Random runs (incompressible: stored chunks), zero runs (compressed), text."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.randrange(3)
        run = rng.randrange(1, 200_000)
        if kind == 0:
            out += rng.randbytes(run)
        elif kind == 1:
            out += bytes(run)
        else:
            out += (b"GET /index.html HTTP/1.1 200 %d\n" % rng.randrange(9999)) * (run // 32)
    return bytes(out[:size])


def test_mixed_data_not_a_chunk_multiple(tmp_path: Path) -> None:
    data = mixed_data(7 * 1024 * 1024 + 3 * 512)  # 3 sectors past a chunk boundary
    result, files = write_e01(tmp_path / "e01", data, block=300_001)
    first = tmp_path / "e01" / "image.E01"
    assert result.segments == ["image.E01"] and all(f.closed for f in files)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.sha1 == hashlib.sha1(data).hexdigest()
    assert result.padding == 0 and result.chunks == 225
    assert result.stored_bytes == first.stat().st_size < len(data)
    assert_verifies(first, data, tmp_path)
    info = ewfinfo(first)
    for shown in (
        "Case number:\t\t2026-017",
        "Evidence number:\tHD-1",
        "Description:\t\tweb01 system disk",
        "Examiner name:\t\tDana Scully",
        "Notes:\t\t\ttaken after isolation line two",
        "Software version used:\tpreserve 0.1",
        "Operating system used:\tLinux",
        "Compression level:\tgood (fast) compression",
        f"MD5:\t\t\t{result.md5}",
        f"SHA1:\t\t\t{result.sha1}",
        f"Set identifier:\t\t{result.set_identifier}",
        f"Media size:\t\t7.0 MiB ({len(data)} bytes)",
    ):
        assert shown in info, (shown, info)


def test_real_ext4_file_system(tmp_path: Path) -> None:
    ext4 = ext4_image(tmp_path, 24)  # mkfs.ext4 -d: a text file and 3 MiB of random data
    data = ext4.read_bytes()
    result, _ = write_e01(tmp_path / "e01", ext4, block=4 * 1024 * 1024)
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert_verifies(tmp_path / "e01" / "image.E01", data, tmp_path)
    # zero-filled space compresses: the 24 MiB file system holds ~3 MiB of data
    assert result.stored_bytes < 6 * 1024 * 1024


def test_segments_under_the_limit(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(3 * 1024 * 1024 + 64 * 1024) + bytes(512 * 1024)
    result, files = write_e01(tmp_path / "e01", data, segment_size=1024 * 1024)
    names = ["image.E01", "image.E02", "image.E03", "image.E04"]
    assert result.segments == names and len(files) == 4
    sizes = [(tmp_path / "e01" / n).stat().st_size for n in names]
    assert max(sizes) <= 1024 * 1024 and sum(sizes) == result.stored_bytes
    assert min(sizes[:-1]) > 1024 * 1024 - 32 * 1024 - 4096  # filled up to the last chunk
    assert_verifies(tmp_path / "e01" / "image.E01", data, tmp_path)
    # every segment file is needed: without the last one the image does not verify
    (tmp_path / "e01" / "image.E04").unlink()
    assert ewfverify(tmp_path / "e01" / "image.E01").returncode != 0


def test_one_sector_and_a_partial_sector(tmp_path: Path) -> None:
    sector = b"\xeb\x63\x90" + bytes(507) + b"\x55\xaa"
    result, _ = write_e01(tmp_path / "one", sector)
    assert result.chunks == 1 and result.padding == 0
    assert_verifies(tmp_path / "one" / "image.E01", sector, tmp_path)
    odd = os.urandom(1000)  # a regular file is not always whole sectors: padded with zeros
    result, _ = write_e01(tmp_path / "odd", odd)
    assert result.padding == 24 and result.media_size == 1024
    assert result.md5 == hashlib.md5(odd + bytes(24)).hexdigest()
    assert_verifies(tmp_path / "odd" / "image.E01", odd + bytes(24), tmp_path)


@pytest.mark.parametrize(
    ("compression", "shown"),
    [("none", "no compression"), ("best", "best compression"), ("empty-block", "no compr")],
)
def test_compression_levels(tmp_path: Path, compression: str, shown: str) -> None:
    data = mixed_data(2 * 1024 * 1024 + 4096, seed=9)
    result, _ = write_e01(tmp_path / "e01", data, compression=compression)
    first = tmp_path / "e01" / "image.E01"
    assert_verifies(first, data, tmp_path)
    assert shown in ewfinfo(first)
    if compression == "none":
        assert result.stored_bytes > len(data)


def test_bad_ranges_are_in_error2(tmp_path: Path) -> None:
    data = bytearray(mixed_data(1024 * 1024, seed=4))
    data[8192:12288] = bytes(4096)  # what the reader stored for sectors it could not read
    out = tmp_path / "e01"
    out.mkdir()
    writer = EwfWriter(lambda n: SequentialFile(out / n), len(data), META)
    writer.add_bad_range(8192, 4096)
    writer.add_bad_range(12288, 512)  # touches the range before: merged
    writer.add_bad_range(500_000, 10)  # part of one sector is the whole sector
    writer.write(bytes(data))
    result = writer.close()
    assert result.bad_sectors == [(16, 9), (976, 1)]
    assert_verifies(out / "image.E01", bytes(data), tmp_path)
    info = ewfinfo(out / "image.E01")
    assert "at sector(s): 16 - 24 number: 9" in info
    assert "at sector(s): 976 - 976 number: 1" in info


def test_a_changed_byte_fails_ewfverify(tmp_path: Path) -> None:
    """The judge can fail: one flipped bit in a stored chunk is found."""
    data = random.Random(8).randbytes(256 * 1024)
    write_e01(tmp_path / "e01", data)
    first = tmp_path / "e01" / "image.E01"
    raw = bytearray(first.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    first.write_bytes(bytes(raw))
    assert ewfverify(first).returncode != 0


def test_wrong_amount_of_data_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "e01"
    out.mkdir()
    files, open_segment = opener(out)

    writer = EwfWriter(open_segment, 4096, META, basename="short")
    writer.write(bytes(1024))
    with pytest.raises(EwfError, match="got 1024"):
        writer.close()
    assert files and all(f.closed for f in files)  # nothing left open
    writer = EwfWriter(open_segment, 512, META, basename="long")
    with pytest.raises(EwfError, match="got more"):
        writer.write(bytes(513))
    writer.abort()


@pytest.mark.parametrize(
    ("size", "settings", "message"),
    [
        (0, {}, "at least one byte"),
        (4096, {"segment_size": 64 * 1024}, "too small"),
        (4096, {"sectors_per_chunk": 48}, "not an EWF chunk size"),
        (4096, {"sector_size": 520}, "sector size"),
        (4096, {"compression": "lzma"}, "unknown E01 compression"),
        (2**45, {"segment_size": 1024 * 1024}, "at most 14971"),
        (2**48, {}, "more chunks than an E01 counts"),
    ],
)
def test_settings_refused_before_anything_is_written(
    tmp_path: Path, size: int, settings: dict[str, object], message: str
) -> None:
    opened: list[str] = []
    with pytest.raises(EwfSettingsError, match=message):
        EwfWriter(opened.append, size, META, **settings)  # type: ignore[arg-type]
    assert opened == []


def test_segment_names() -> None:
    assert [segment_extension(n) for n in (1, 9, 10, 99)] == ["E01", "E09", "E10", "E99"]
    assert [segment_extension(n) for n in (100, 101, 125, 126)] == ["EAA", "EAB", "EAZ", "EBA"]
    assert segment_extension(775) == "EZZ" and segment_extension(776) == "FAA"
    assert segment_extension(99 + 22 * 676) == "ZZZ"
    with pytest.raises(ValueError):
        segment_extension(100 + 22 * 676)


def test_a_stopped_image_keeps_what_was_read_and_does_not_verify(tmp_path: Path) -> None:
    """A run stopped half-way: the chunks received are stored with their tables (ewfinfo
    still reads the case), but the set is not claimed complete: ewfverify refuses it."""
    out = tmp_path / "e01"
    out.mkdir()
    files, open_segment = opener(out)

    data = random.Random(2).randbytes(1024 * 1024 + 1000)
    writer = EwfWriter(open_segment, 4 * len(data), META)
    writer.write(data)
    assert writer.received == len(data)
    writer.abort(flush=True)
    assert [f.closed for f in files] == [True]
    first = out / "image.E01"
    assert data[-1000:] in first.read_bytes()  # every chunk, the short last one too
    assert "Case number:\t\t2026-017" in ewfinfo(first)
    assert ewfverify(first).returncode != 0
