"""The responder's FAT32 or exFAT drive is a non-event: every name is stored, FAT32's 4 GiB
limit is decided before a byte is read, and a file too big for the room left is only that.

Run on real implementations, the Debian FUSE drivers (``fusefat``, ``exfat-fuse``): this
kernel has neither a vfat nor an exfat module. Both drivers are case-insensitive, like the
kernel's."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from conftest import IS_ROOT, collect_json, journal_records, verify
from evidence_factory import new_writer

from collectors.copy import CopyEngine
from manifests.fstype import FAT_MAX_FILE

Drive = Callable[[str, int], Path]


def _missing(*tools: str) -> str | None:
    if not IS_ROOT:
        return "needs root to mount FUSE file systems"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    absent = [t for t in tools if shutil.which(t) is None]
    return f"not installed: {', '.join(absent)}" if absent else None


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[Drive]:
    """``drive("fat32" | "exfat", megabytes)``: a fresh image file, formatted and mounted
    with the FUSE driver; unmounted (and its loop device freed) at the end."""
    undo: list[list[str]] = []

    def make(kind: str, megabytes: int) -> Path:
        image, mount = tmp_path / f"{kind}.img", tmp_path / kind
        mount.mkdir()
        with open(image, "wb") as f:
            f.truncate(megabytes << 20)
        if kind == "fat32":
            reason = _missing("mkfs.vfat", "fusefat", "fusermount")
            if reason:
                pytest.skip(reason)
            _run(["mkfs.vfat", "-F", "32", image])
            _run(["fusefat", "-o", "rw+", image, mount])
        else:
            reason = _missing("mkfs.exfat", "mount.exfat-fuse", "losetup", "fusermount")
            if reason:
                pytest.skip(reason)
            _run(["mkfs.exfat", image])
            # exfat-fuse run by root wants a block device: a loop device over the image
            loop = _run(["losetup", "-f", "--show", image]).stdout.decode().strip()
            undo.append(["losetup", "-d", loop])
            _run(["mount.exfat-fuse", loop, mount])
        undo.append(["fusermount", "-u", str(mount)])
        return mount

    yield make
    for argv in reversed(undo):
        subprocess.run(argv, capture_output=True, check=False)


def _run(argv: list[str | os.PathLike[str]]) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(argv, capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"{argv[0]} failed: {result.stderr.decode(errors='replace').strip()}")
    return result


def _source_of(record: dict) -> bytes:
    src = record.get("source") or {}
    return base64.b64decode(src["path_b64"]) if "path_b64" in src else src["path"].encode()


# Every name FAT32 and exFAT cannot store as it is, and case twins.
HOSTILE = [
    *(f"a{c}b".encode() for c in '":*<>?|\\'),
    b"trailing.",
    b"trailing ",
    b"CON",
    b"con.txt",
    b"NUL.tar.gz",
    b"COM1",
    b"LPT9.log",
    b"x" * 255,  # as long as the source can hold: shortened to 200 bytes
    b"Readme",
    b"README",
    b"readme~2",
]
# fusefat refuses every name that is not ASCII, where the kernel's vfat stores UTF-16.
NOT_ASCII = ["é".encode() * 127, "日本語".encode() * 28]


@pytest.mark.parametrize("kind", ["fat32", "exfat"])
def test_hostile_names_are_stored_and_map_back(tmp_path: Path, drive: Drive, kind: str) -> None:
    out = drive(kind, 40)
    src = tmp_path / "src"
    raw_src = os.fsencode(src)
    files = [raw_src + b"/" + n for n in HOSTILE + (NOT_ASCII if kind == "exfat" else [])]
    files += [raw_src + b"/Dir/inner", raw_src + b"/DIR/inner"]  # directories differ in case
    for path in files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(path)
    sparse = src / "sparse.bin"  # a hole inside and at the end: written out as zeros here
    with open(sparse, "wb") as f:
        f.seek(1 << 20)
        f.write(b"data")
        f.truncate(3 << 20)
    summary = collect_json(out, "--only", "files", "--path", src)
    assert summary["counts"]["failed"] == 0 and summary["exit_code"] == 0, summary
    evidence = Path(summary["evidence_dir"])
    start = journal_records(evidence)[0]
    assert start["output_file_system"] == {"fat32": "FAT32", "exfat": "exFAT"}[kind]
    records = [r for r in journal_records(evidence) if r["type"] == "artifact" and "source" in r]
    stored = {_source_of(r): r["path"] for r in records}
    assert sorted(stored) == sorted([*files, os.fsencode(sparse)])
    assert len(set(map(str.casefold, stored.values()))) == len(stored)  # all apart
    for path in files:
        rel = stored[path]
        assert (evidence / rel).read_bytes() == path  # each copy holds its own source
        # the stored name is the original percent-encoded, maybe with a ~N to keep it apart
        name = rel.rsplit("/", 1)[1]
        if "%~" not in name:  # a shortened name maps back through the journal alone
            assert os.path.basename(path) in (
                unquote_to_bytes(name),
                unquote_to_bytes(re.sub(r"~\d+$", "", name)),
            ), (path, name)
    assert stored[raw_src + b"/CON"].endswith("/%43ON")
    assert stored[raw_src + b"/a:b"].endswith("/a%3Ab")
    assert (evidence / stored[os.fsencode(sparse)]).read_bytes() == sparse.read_bytes()
    checked = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert checked.returncode == 0, checked.stdout.decode()


def test_fat32_refuses_a_file_over_4_gib_before_reading_it(tmp_path: Path, drive: Drive) -> None:
    out = drive("fat32", 40)
    src = tmp_path / "src"
    src.mkdir()
    big = src / "disk.img"
    with open(big, "wb") as f:
        f.truncate(FAT_MAX_FILE + 100 * 1024 * 1024)  # 4.1 GiB, all hole
    for n in range(3):
        (src / f"small{n}.txt").write_bytes(b"small %d\n" % n)

    writer = new_writer(out, "timed")
    engine = CopyEngine(writer)
    began = time.monotonic()
    assert engine.preserve(os.fsencode(big), "artifacts/files/disk.img", "files") is None
    took = time.monotonic() - began
    engine.shutdown()
    writer.finish()
    assert took < 0.5, f"refusing took {took:.2f} s"

    summary = collect_json(out, "--only", "files", "--path", src, expect=(1,))
    evidence = Path(summary["evidence_dir"])
    records = journal_records(evidence)
    [refused] = [r for r in records if r["type"] == "error"]
    assert refused["reason"] == (
        f"larger than FAT32's 4 GiB file limit ({big.stat().st_size} bytes): "
        "use an exFAT or ext4 drive for this file"
    )
    assert _source_of(refused) == os.fsencode(big)
    assert summary["counts"]["stored"] == 3
    assert verify(evidence).returncode == 0


def test_a_file_that_does_not_fit_is_only_that(tmp_path: Path, drive: Drive) -> None:
    out = drive("exfat", 12)  # fusefat reports no free space, so exFAT shows the sizes
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(20 << 20))
    with open(src / "sparse.img", "wb") as f:  # no holes on exFAT: it needs all 30 MiB
        f.truncate(30 << 20)
    for n in range(5):
        (src / f"small{n}.txt").write_bytes(os.urandom(4096))
    summary = collect_json(out, "--only", "files", "--path", src, expect=(1,))
    assert summary["status"] == "complete"
    evidence = Path(summary["evidence_dir"])
    records = journal_records(evidence)
    errors = {os.path.basename(_source_of(r)): r["reason"] for r in records if r["type"] == "error"}
    assert set(errors) == {b"big.bin", b"sparse.img"}
    assert errors[b"big.bin"].startswith(f"does not fit: {20 << 20} bytes, ")
    assert errors[b"sparse.img"].startswith(f"does not fit: {30 << 20} bytes, ")
    free = int(errors[b"big.bin"].split(", ")[1].split()[0])
    assert 0 < free < 12 << 20
    stored = [r for r in records if r["type"] == "artifact" and r["collector"] == "files"]
    assert len(stored) == 5
    assert verify(evidence).returncode == 0


def test_a_full_drive_journals_what_it_did_not_attempt(tmp_path: Path, drive: Drive) -> None:
    out = drive("exfat", 12)
    src = tmp_path / "src"
    src.mkdir()
    for n in range(20):  # 20 MiB that does not compress onto 12 MiB
        (src / f"f{n:02d}.bin").write_bytes(os.urandom(1 << 20))
    summary = collect_json(out, "--only", "files", "--path", src, expect=(1,))
    assert summary["status"] == "stopped: output disk full"
    evidence = Path(summary["evidence_dir"])
    records = [r for r in journal_records(evidence) if r.get("collector") == "files"]
    outcome = {_source_of(r): r for r in records if r["type"] in ("artifact", "skipped", "error")}
    assert len(outcome) == len(records) == 20  # one record each, none left out
    kinds = [r["type"] for r in outcome.values()]
    assert kinds.count("error") == 1 and 0 < kinds.count("artifact") < 19
    skipped = [r for r in outcome.values() if r["type"] == "skipped"]
    assert skipped and {r["reason"] for r in skipped} == {"output drive full: not attempted"}
    assert summary["counts"]["skipped"] == len(skipped)
    assert verify(evidence).returncode == 0
