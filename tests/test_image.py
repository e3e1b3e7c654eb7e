"""``preserve image`` on real devices: loop devices (made and detached here, the only
devices these tests open) over image files holding a real ext4 file system, bad sectors
from a FUSE file system built here (tests/badfs.c) under a loop device, a FAT32 drive,
an SFTP server, a killed run and a stopped one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import IS_ROOT, PRESERVE_CODE, ROOT, journal_records, preserve, verify
from test_output_drives import drive  # noqa: F401 (the FAT32 drive fixture)

from agent.imaging.output import OutputSpec, RawOutput, fat_part_size
from agent.imaging.pieces import PieceHasher
from manifests.fstype import FAT_MAX_FILE
from manifests.sink import LocalDirSink

MiB = 1024 * 1024
Attach = Callable[..., str]


def _missing() -> str | None:
    if not IS_ROOT:
        return "needs root (loop devices)"
    absent = [t for t in ("losetup", "mkfs.ext4", "debugfs") if shutil.which(t) is None]
    return f"not installed: {', '.join(absent)}" if absent else None


needs_loop = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture
def loops() -> Iterator[Attach]:
    """``attach(path, read_only=True)``: a new loop device over ``path``; detached after."""
    made: list[str] = []

    def attach(path: Path, read_only: bool = True) -> str:
        argv = ["losetup", "-f", "--show", *(["-r"] if read_only else []), str(path)]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        made.append(done.stdout.strip())
        return made[-1]

    yield attach
    for dev in reversed(made):
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


def ext4_image(tmp: Path, megabytes: int = 24, name: str = "disk.img") -> Path:
    """An image file holding an ext4 file system with known content."""
    content = tmp / f"{name}.content"
    (content / "docs").mkdir(parents=True)
    (content / "hello.txt").write_text("hello from the suspect disk\n")
    (content / "docs" / "random.bin").write_bytes(os.urandom(3 * MiB))
    image = tmp / name
    with open(image, "wb") as f:
        f.truncate(megabytes * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", content, image], check=True)
    return image


def sha256_of(path: str | Path) -> str:
    done = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def take_image(
    device: str | Path, out: Path, *extra: str, expect: tuple[int, ...] = (0,)
) -> tuple[dict, Path]:
    done = preserve("image", device, "--json", "-o", out, *extra)
    assert done.returncode in expect, (done.returncode, done.stderr.decode())
    summary = json.loads(done.stdout)
    return summary, Path(summary["evidence_dir"])


def of_type(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["type"] == kind]


# -- pieces, on their own ---------------------------------------------------------------


def test_pieces_restart_in_every_part_and_cover_every_byte() -> None:
    hasher = PieceHasher(4, part_size=10)
    data = os.urandom(23)
    pieces = hasher.feed(memoryview(data[:13])) + hasher.feed(memoryview(data[13:]))
    last = hasher.finish()
    assert last is not None
    spans = [(p.offset, p.length) for p in [*pieces, last]]
    assert spans == [(0, 4), (4, 4), (8, 2), (10, 4), (14, 4), (18, 2), (20, 3)]
    for p in [*pieces, last]:
        assert p.sha256 == hashlib.sha256(data[p.offset : p.offset + p.length]).hexdigest()


# -- a loop device over a real ext4 file system --------------------------------------


@needs_loop
def test_raw_image_of_an_ext4_disk_is_the_device_byte_for_byte(
    tmp_path: Path, loops: Attach
) -> None:
    device = loops(ext4_image(tmp_path))
    summary, evidence = take_image(device, tmp_path / "out", "--piece-size", "4M", "--case", "IR-7")
    image = evidence / "artifacts/image/image.raw"
    assert sha256_of(image) == sha256_of(device)
    records = journal_records(evidence)
    [start], [end] = of_type(records, "image-start"), of_type(records, "image-end")
    assert end["sha256"] == sha256_of(device) and end["complete"] is True
    assert end["size"] == end["device_size"] == 24 * MiB
    source = start["source"]
    assert source["kind"] == "block device" and source["size"] == 24 * MiB
    assert source["logical_sector_size"] == 512
    assert source["loop_backing_file"].endswith("disk.img")
    assert source["mounts"] == [] and start["live"] is False
    assert start["partition_table"]["type"] == "none"  # a bare file system, no table
    pieces = of_type(records, "image-piece")
    assert [p["index"] for p in pieces] == list(range(6))
    data = image.read_bytes()
    for p in pieces:
        assert hashlib.sha256(data[p["offset"] : p["offset"] + 4 * MiB]).hexdigest() == p["sha256"]
    # The image is the file system: its known content reads back from it.
    cat = subprocess.run(["debugfs", "-R", "cat /hello.txt", image], capture_output=True)
    assert cat.stdout == b"hello from the suspect disk\n"
    assert ["Image SHA-256", end["sha256"]] in summary["summary_rows"]
    assert summary["preflight"]["estimate"]["image_bytes"] == 24 * MiB
    checked = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert checked.returncode == 0, checked.stdout.decode()
    assert b"6 pieces checked, 6 ok" in checked.stdout


@needs_loop
def test_a_damaged_byte_is_named_by_its_piece(tmp_path: Path, loops: Attach) -> None:
    device = loops(ext4_image(tmp_path))
    _, evidence = take_image(device, tmp_path / "out", "--piece-size", "4M")
    image = evidence / "artifacts/image/image.raw"
    image.chmod(0o644)
    with open(image, "r+b") as f:
        f.seek(9 * MiB + 123)
        byte = f.read(1)
        f.seek(9 * MiB + 123)
        f.write(bytes([byte[0] ^ 0x01]))
    checked = verify(evidence, "--json")
    assert checked.returncode == 1
    result = json.loads(checked.stdout)
    [problem] = result["files"]["problems"]
    assert problem["path"] == "artifacts/image/image.raw"
    assert "piece 2 (image bytes 8388608-12582911)" in problem["detail"]
    assert "the other 5 piece(s) match" in problem["detail"]
    assert result["image_pieces"] == {"checked": 6, "ok": 5}


@needs_loop
def test_a_regular_file_vm_disk_with_a_gpt(tmp_path: Path) -> None:
    if shutil.which("sfdisk") is None:
        pytest.skip("sfdisk not installed")
    disk = tmp_path / "vm.img"
    with open(disk, "wb") as f:
        f.truncate(8 * MiB)
    layout = "label: gpt\nstart=2048, size=4096, type=L, name=boot\nstart=6144, type=L, name=data\n"
    subprocess.run(["sfdisk", "-q", disk], input=layout.encode(), check=True)
    with open(disk, "ab") as f:
        f.write(b"an odd tail, not a whole sector")  # O_DIRECT reads it all the same
    summary, evidence = take_image(disk, tmp_path / "out", "--piece-size", "1M")
    image = evidence / "artifacts/image/image.raw"
    assert image.read_bytes() == disk.read_bytes()
    [start] = of_type(journal_records(evidence), "image-start")
    assert start["source"]["kind"] == "regular file"
    table = start["partition_table"]
    assert table["type"] == "gpt"
    assert [(p["name"], p["start_sector"]) for p in table["partitions"]] == [
        ("boot", 2048),
        ("data", 6144),
    ]
    assert verify(evidence).returncode == 0


def test_a_hostile_partition_table_is_recorded_not_trusted(tmp_path: Path) -> None:
    """A GPT whose entry starts past 2**53: recorded as a string (the journal takes no
    larger integer), and the disk is imaged all the same."""
    disk = bytearray(16 * 1024)
    disk[446 + 4] = 0xEE  # the protective MBR entry
    disk[446 + 8 : 446 + 16] = struct.pack("<II", 1, 31)
    disk[510:512] = b"\x55\xaa"
    disk[512:520] = b"EFI PART"
    disk[512 + 72 : 512 + 88] = struct.pack("<QII", 2, 1, 128)
    entry = os.urandom(32) + struct.pack("<QQ", 2**63, 2**63 + 9) + bytes(8)
    entry += "evil".encode("utf-16-le").ljust(72, b"\0")
    disk[1024 : 1024 + 128] = entry
    path = tmp_path / "hostile.img"
    path.write_bytes(bytes(disk))
    _, evidence = take_image(path, tmp_path / "out", "--piece-size", "4K")
    [start] = of_type(journal_records(evidence), "image-start")
    [part] = start["partition_table"]["partitions"]
    assert part["name"] == "evil" and part["start_sector"] == str(2**63)
    assert (evidence / "artifacts/image/image.raw").read_bytes() == bytes(disk)
    assert verify(evidence).returncode == 0


def test_a_gpt_whose_entries_lie_past_any_disk_is_recorded_and_imaged(tmp_path: Path) -> None:
    """A GPT header whose entry array starts at LBA 2**54: its byte offset does not fit
    an ``off_t`` (``OverflowError``, not an ``OSError``). The table is recorded as
    unreadable, and the disk is imaged all the same."""
    disk = bytearray(16 * 1024)
    disk[446 + 4] = 0xEE
    disk[446 + 8 : 446 + 16] = struct.pack("<II", 1, 31)
    disk[510:512] = b"\x55\xaa"
    disk[512:520] = b"EFI PART"
    disk[512 + 72 : 512 + 88] = struct.pack("<QII", 2**54, 128, 128)
    path = tmp_path / "far.img"
    path.write_bytes(bytes(disk))
    summary, evidence = take_image(path, tmp_path / "out", "--piece-size", "4K")
    [start] = of_type(journal_records(evidence), "image-start")
    table = start["partition_table"]
    assert table["type"] == "gpt" and "GPT unreadable" in table["error"]
    assert table["partitions"][0]["type_id"] == 0xEE  # the protective MBR entry, as read
    assert (evidence / "artifacts/image/image.raw").read_bytes() == bytes(disk)
    assert verify(evidence).returncode == 0


@needs_loop
def test_a_bad_device_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = preserve("image", "/dev/no-such-disk", "-o", tmp_path / "out")
    assert missing.returncode == 2
    [line] = missing.stderr.decode().strip().splitlines()
    assert "cannot open /dev/no-such-disk: No such file or directory" in line
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (tmp_path, fifo):  # a directory, a FIFO (opened without blocking)
        done = preserve("image", target, "-o", tmp_path / "out", timeout=30)
        assert done.returncode == 2, done.stderr
        assert b"neither a block device nor a regular file" in done.stderr
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"x" * 4096)
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    denied = subprocess.run(
        [*setpriv, sys.executable, "-c", PRESERVE_CODE, "image", secret, "-o", "/tmp/x-none"],
        capture_output=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"},
    )
    assert denied.returncode == 2
    assert denied.stderr.decode().strip().splitlines() == [
        f"error: cannot open {secret}: Permission denied; run it as root; nothing was imaged"
    ]
    assert not (tmp_path / "out").exists()  # nothing was created for any of them


@needs_loop
def test_a_live_read_write_mount_is_imaged_with_a_warning(tmp_path: Path, loops: Attach) -> None:
    """Mounted read-write in a private mount namespace; and the output may not be on it."""
    device = loops(ext4_image(tmp_path), read_only=False)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = tmp_path / "out"
    code = (
        f"mount {device} {mnt} && "
        f"{sys.executable} -c '{PRESERVE_CODE}' image {device} -o {mnt}/evidence; "
        f"echo refused=$?; {sys.executable} -c '{PRESERVE_CODE}' image {device} --json -o {out}"
    )
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", code],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert b"refused=2" in done.stdout, done.stderr.decode()
    assert b"is on " + device.encode() + b", the device being imaged" in done.stderr
    summary = json.loads(done.stdout.split(b"\n", 1)[1])
    evidence = Path(summary["evidence_dir"])
    [start] = of_type(journal_records(evidence), "image-start")
    assert start["live"] is True
    assert start["source"]["mounts"][0]["mount_point"] == str(mnt)
    assert "not a consistent snapshot" in start["warning"]
    assert any(label == "IMAGE OF A LIVE FILE SYSTEM" for label, _ in summary["summary_rows"])
    assert verify(evidence).returncode == 0


@needs_loop
def test_image_is_the_last_stage_of_a_run(tmp_path: Path, loops: Attach) -> None:
    device = loops(ext4_image(tmp_path, 8))
    done = preserve("--json", "-o", tmp_path / "out", "--only", "system", "--image", device)
    assert done.returncode == 0, done.stderr.decode()
    evidence = Path(json.loads(done.stdout)["evidence_dir"])
    records = journal_records(evidence)
    stages = [r["reason"] for r in of_type(records, "seal") if r["reason"].startswith("after")]
    assert stages == ["after stage volatile", "after stage image"]
    kinds = [r["type"] for r in records]
    system_done = max(i for i, r in enumerate(records) if r.get("collector") == "system")
    assert kinds.index("image-start") > system_done
    assert records[0]["collectors"] == ["system", "image"]
    assert verify(evidence).returncode == 0


# -- bad sectors: a FUSE file system that fails reads in chosen ranges -------------------


@pytest.fixture(scope="session")
def badfs_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        pytest.skip("gcc or pkg-config not installed")
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True
    )
    if flags.returncode != 0:
        pytest.skip("libfuse3-dev not installed")
    binary = tmp_path_factory.mktemp("badfs") / "badfs"
    source = ROOT / "tests" / "badfs.c"
    subprocess.run(["gcc", "-O2", "-o", binary, source, *flags.stdout.split()], check=True)
    return binary


@pytest.fixture
def badfs(tmp_path: Path, badfs_binary: Path) -> Iterator[Callable[..., Path]]:
    """``mount(backing, ranges, delay_us=0, ghosts=False)``: the FUSE file whose reads
    fail in ``ranges`` (offset, length), with ``ghosts`` beside it in its directory (see
    tests/badfs.c); unmounted after (loop devices are detached first)."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    mounted: list[tuple[Path, subprocess.Popen[bytes]]] = []

    def mount(
        backing: Path, ranges: list[tuple[int, int]], delay_us: int = 0, ghosts: bool = False
    ) -> Path:
        where = tmp_path / f"fuse{len(mounted)}"
        where.mkdir()
        spans = [f"{o}:{n}" for o, n in ranges] + ["ghosts"] * ghosts
        proc = subprocess.Popen([badfs_binary, backing, where, *spans, f"delay={delay_us}"])
        mounted.append((where, proc))
        for _ in range(200):
            if (where / "disk").exists():
                return where / "disk"
            time.sleep(0.05)
        pytest.fail("the FUSE file system did not come up")

    yield mount
    for where, proc in reversed(mounted):
        for lazy in ([], ["-z"]):  # the loop device may let go of the file a moment late
            unmount = subprocess.run(["fusermount3", "-u", *lazy, where], capture_output=True)
            if unmount.returncode == 0:
                break
            time.sleep(0.5)
        proc.terminate()  # unmounted: it may linger seconds before it notices
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


BAD = [(1 * MiB, 4096), (5 * MiB + 512, 512), (5 * MiB + 2048, 1536), (23 * MiB, 64 * 1024)]


@needs_loop
def test_bad_sectors_are_zeros_and_each_range_is_journaled(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach
) -> None:
    backing = ext4_image(tmp_path)
    device = loops(badfs(backing, BAD))
    summary, evidence = take_image(device, tmp_path / "out", "--piece-size", "4M", expect=(1,))
    records = journal_records(evidence)
    journaled = [
        (r["offset"], r["length"], r["errno"]) for r in of_type(records, "image-bad-range")
    ]
    assert journaled == [(o, n, 5) for o, n in BAD]  # 5: EIO, range by range, to the sector
    expected = bytearray(backing.read_bytes())
    for offset, length in BAD:
        expected[offset : offset + length] = bytes(length)
    image = (evidence / "artifacts/image/image.raw").read_bytes()
    assert image == bytes(expected)
    [end] = of_type(records, "image-end")
    assert end["sha256"] == hashlib.sha256(expected).hexdigest()
    assert end["bad_ranges"] == 4 and end["bad_bytes"] == sum(n for _, n in BAD)
    assert end["complete"] is True
    assert summary["counts"]["failed"] == 1  # one error record says it, for the exit code
    rows = dict(map(tuple, summary["summary_rows"]))
    assert rows["Unreadable sectors"].startswith("4 ranges, 70.0 KiB could not be read")
    assert verify(evidence).returncode == 0


def _wait_for(path_glob: Callable[[], list[Path]], test: Callable[[list[dict]], bool]) -> Path:
    for _ in range(600):
        found = path_glob()
        if found:
            journal = found[0] / "custody.jsonl"
            lines = journal.read_bytes().splitlines() if journal.exists() else []
            records = [json.loads(line) for line in lines if line.endswith(b"}")]
            if test(records):
                return found[0]
        time.sleep(0.05)
    pytest.fail("the image never got that far")


def _sealed_pieces(records: list[dict]) -> int:
    """Pieces journaled before the last periodic seal."""
    last_seal = max((i for i, r in enumerate(records) if r.get("reason") == "periodic"), default=0)
    return sum(1 for r in records[:last_seal] if r["type"] == "image-piece")


def _slow_image(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach, *extra: str
) -> tuple[Path, str, subprocess.Popen[bytes], Path]:
    backing = ext4_image(tmp_path, 32)
    device = loops(badfs(backing, [], delay_us=250_000))  # about 1.3 MiB/s
    out = tmp_path / "out"
    argv = [sys.executable, "-c", PRESERVE_CODE, "image", device, "-o", out, "--piece-size", "1M"]
    argv += extra
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return backing, device, proc, out


def _stop_after_pieces(
    proc: subprocess.Popen[bytes], out: Path, pieces: int
) -> tuple[Path, list[dict], dict]:
    """SIGTERM once ``pieces`` pieces are journaled; the run must end as stopped, exit 1.
    Returns its evidence directory, journal records and ``image-end`` record."""
    try:
        _wait_for(lambda: list(out.glob("*")), lambda r: len(of_type(r, "image-piece")) >= pieces)
        proc.send_signal(signal.SIGTERM)
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr.decode()
    [evidence] = list(out.glob("*"))
    records = journal_records(evidence)
    [end] = of_type(records, "image-end")
    assert end["complete"] is False and end["stopped"] == "stopped by a signal"
    return evidence, records, end


@needs_loop
def test_a_killed_run_leaves_a_sealed_prefix_that_verify_proves(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach
) -> None:
    backing, _, proc, out = _slow_image(tmp_path, badfs, loops)
    try:
        evidence = _wait_for(lambda: list(out.glob("*")), lambda r: _sealed_pieces(r) >= 2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    sealed = _sealed_pieces(journal_records(evidence))
    checked = verify(evidence, "--json")
    assert checked.returncode == 1  # the run did not finish: said, and the prefix proven
    result = json.loads(checked.stdout)
    [partial] = [p for p in result["files"]["problems"] if "image.raw" in p["path"]]
    assert partial["status"] == "incomplete"
    assert partial["path"] == "artifacts/image/image.raw%part"
    proven = int(partial["detail"].split("its first ")[1].split(" ")[0])
    assert proven >= sealed >= 2
    assert f"{proven * MiB} bytes, match the sealed journal" in partial["detail"]
    data = (evidence / partial["path"]).read_bytes()[: proven * MiB]
    assert data == backing.read_bytes()[: proven * MiB]


@needs_loop
def test_a_killed_run_over_sftp_drop_box_proves_its_prefix_there(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach
) -> None:
    """A drop-box cannot rename: the image is written under its final name after a
    'begin' record, and verify on the server proves its sealed pieces all the same."""
    from sftp_server import SftpServer, available

    if available() is not None:
        pytest.skip(available() or "")
    backing = ext4_image(tmp_path, 32)
    device = loops(badfs(backing, [], delay_us=250_000))
    server = SftpServer(tmp_path / "srv")
    try:
        argv = server.in_cli(
            sys.executable, "-c", PRESERVE_CODE, "image", device, "--piece-size", "1M",
            "-o", server.url(), "--sink-host-key", server.fingerprint,
            "--sink-key", server.dropbox_key,
        )  # fmt: skip
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            found = lambda: [p for p in server.evidence.iterdir() if p.is_dir()]  # noqa: E731
            evidence = _wait_for(found, lambda r: _sealed_pieces(r) >= 2)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        sealed = _sealed_pieces(journal_records(evidence))
        result = json.loads(verify(evidence, "--json").stdout)
        [partial] = [p for p in result["files"]["problems"] if "image.raw" in p["path"]]
        assert partial["path"] == "artifacts/image/image.raw"  # its final name, in place
        assert partial["status"] == "incomplete"
        proven = int(partial["detail"].split("its first ")[1].split(" ")[0])
        assert proven >= sealed >= 2, partial
        data = (evidence / partial["path"]).read_bytes()[: proven * MiB]
        assert data == backing.read_bytes()[: proven * MiB]
    finally:
        server.close()


@needs_loop
def test_sigterm_ends_with_a_sealed_shorter_image(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach
) -> None:
    backing, _, proc, out = _slow_image(tmp_path, badfs, loops)
    evidence, records, end = _stop_after_pieces(proc, out, 2)
    assert 2 * MiB <= end["size"] < 32 * MiB
    image = (evidence / "artifacts/image/image.raw").read_bytes()
    assert image == backing.read_bytes()[: end["size"]]
    assert end["sha256"] == hashlib.sha256(image).hexdigest()
    assert records[-1]["type"] == "seal"
    checked = verify(evidence)
    assert checked.returncode == 0, checked.stdout.decode()
    assert b"collection interrupted by SIGTERM" in checked.stdout


# -- where it goes: FAT32, an SFTP server --------------------------------------------------


@needs_loop
def test_on_fat32_it_splits_and_the_parts_cat_to_the_image(
    tmp_path: Path,
    drive: Callable[[str, int], Path],  # noqa: F811 (the fixture)
    loops: Attach,
) -> None:
    out = drive("fat32", 64)
    sink = LocalDirSink.create_new(out, "probe")
    try:  # on its own, FAT32 splits under its 4 GiB file limit, a whole number of pieces
        assert sink.file_system.max_file_size == FAT_MAX_FILE
        assert fat_part_size(sink.file_system, 64 * MiB) == 4 * 1024 * MiB - 64 * MiB
        # (writing 4 GiB through fusefat takes 10 minutes here: the decision, on the real
        # drive's file system, and the split itself below with --split)
        for size, parts in ((5 * 1024**3, 4 * 1024 * MiB - 64 * MiB), (FAT_MAX_FILE, None)):
            spec = OutputSpec("raw", size, 512, None, sink.file_system, 64 * MiB, {})
            assert RawOutput(None, spec).part_size == parts  # type: ignore[arg-type]
    finally:
        sink.close()
        os.rmdir(out / "probe")
    device = loops(ext4_image(tmp_path, 12))
    summary, evidence = take_image(device, out, "--split", "5M", "--piece-size", "2M")
    parts = sorted((evidence / "artifacts/image").iterdir())
    assert [p.name for p in parts] == ["image.raw.000", "image.raw.001", "image.raw.002"]
    assert [p.stat().st_size for p in parts] == [5 * MiB, 5 * MiB, 2 * MiB]
    catted = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    assert catted == sha256_of(device)
    records = journal_records(evidence)
    spans = [
        (p["part"].rsplit(".", 1)[1], p["part_offset"], p["length"])
        for p in of_type(records, "image-piece")
    ]
    assert spans == [
        ("000", 0, 2 * MiB), ("000", 2 * MiB, 2 * MiB), ("000", 4 * MiB, MiB),
        ("001", 0, 2 * MiB), ("001", 2 * MiB, 2 * MiB), ("001", 4 * MiB, MiB),
        ("002", 0, 2 * MiB),
    ]  # fmt: skip
    checked = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert checked.returncode == 0, checked.stdout.decode()


@needs_loop
@pytest.mark.parametrize("account", ["plain", "dropbox"])
def test_streamed_to_an_sftp_server_it_verifies_there(
    tmp_path: Path, loops: Attach, account: str
) -> None:
    from sftp_server import SftpServer, available

    if available() is not None:
        pytest.skip(available() or "")
    device = loops(ext4_image(tmp_path, 16))
    server = SftpServer(tmp_path / "srv")
    try:
        key = server.plain_key if account == "plain" else server.dropbox_key
        argv = server.in_cli(
            sys.executable, "-c", PRESERVE_CODE, "image", device, "--json", "--piece-size", "2M",
            "-o", server.url(), "--sink-host-key", server.fingerprint, "--sink-key", key,
        )  # fmt: skip
        done = subprocess.run(argv, capture_output=True, cwd=ROOT, timeout=120)
        summary = json.loads(done.stdout)
        errors = [
            line
            for d in server.evidence.iterdir()
            if (d / "custody.jsonl").exists()
            for line in (d / "custody.jsonl").read_text().splitlines()
            if '"type":"error"' in line
        ]
        assert done.returncode == 0, (summary["counts"], errors)
        assert summary["evidence_dir"].startswith("sftp://")
        [evidence] = [p for p in server.evidence.iterdir() if p.is_dir()]
        assert sha256_of(evidence / "artifacts/image/image.raw") == sha256_of(device)
        checked = verify(evidence, "--fingerprint", summary["fingerprint"])
        assert checked.returncode == 0, checked.stdout.decode()
        assert b"8 pieces checked, 8 ok" in checked.stdout
    finally:
        server.close()


@needs_loop
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_progress_shows_bytes_rate_and_time_left_on_a_terminal(
    tmp_path: Path, badfs: Callable[..., Path], loops: Attach
) -> None:
    device = loops(badfs(ext4_image(tmp_path, 32), [], delay_us=250_000))
    session = f"preserve-image-{tmp_path.name}"
    command = f"{sys.executable} -c '{PRESERVE_CODE}' image {device} -o {tmp_path / 'out'}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", "-c", str(ROOT)]
        + [f"{command}; echo FINISHED; sleep 60"],
        check=True,
    )

    def screen() -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout

    try:
        line = None
        for _ in range(300):
            line = next((ln for ln in screen().splitlines() if "left" in ln), None)
            if line:
                break
            time.sleep(0.1)
        assert line is not None, screen()
        assert " of 32.0 MiB (" in line and "/s  about " in line, line
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        for _ in range(300):
            if "FINISHED" in screen():
                break
            time.sleep(0.1)
        assert "interrupted: sealing what was collected so far" in screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


@needs_loop
def test_a_full_drive_keeps_the_prefix_and_the_room_to_seal(
    tmp_path: Path,
    drive: Callable[[str, int], Path],  # noqa: F811 (the fixture)
    loops: Attach,
) -> None:
    out = drive("exfat", 16)  # fusefat reports no free space; exFAT does
    device = loops(ext4_image(tmp_path, 24))
    summary, evidence = take_image(device, out, "--piece-size", "1M", expect=(1,))
    records = journal_records(evidence)
    [end] = of_type(records, "image-end")
    assert end["complete"] is False and end["stopped"] == "the output drive is full"
    image = (evidence / "artifacts/image/image.raw").read_bytes()
    assert 0 < len(image) == end["size"] < 24 * MiB
    with open(device, "rb") as f:
        assert image == f.read(len(image))
    assert end["sha256"] == hashlib.sha256(image).hexdigest()
    assert summary["status"] == "stopped: output disk full"
    assert verify(evidence).returncode == 0
