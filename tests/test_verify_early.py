"""verify's big files hashed by a forked child while the journal is read
(manifests/verify_early.py): the child's digests are used, they still catch a changed
file, a file swapped since the walk is never taken from them, and the child is not
forked beside other threads and is stopped for image pieces."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, collect_json, verify
from evidence_factory import copy_evidence

from manifests import verify as verify_module
from manifests import verify_early, verify_files
from manifests.verify import verify_evidence
from manifests.verify_early import EarlyHashes
from manifests.verify_files import walked_hasher
from manifests.verify_index import s64

BIG_FILE = 3 * 1024 * 1024
# The suite's own process may run leftover threads of earlier tests, where verify forks
# no child: the tests that look at the child say it is alone (the guard itself is tested
# below, and end to end by the real ``verify``).
VERIFY_CODE = "from agent.commands.verify import main; main()"


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Evidence of four big files and a few small ones."""
    base = tmp_path_factory.mktemp("early")
    src = base / "src"
    (src / "deep" / "er").mkdir(parents=True)
    for n, where in enumerate(["", "deep/", "deep/er/", "deep/er/"]):
        (src / f"{where}big{n}.bin").write_bytes(os.urandom(BIG_FILE))
    for n in range(20):
        (src / f"small{n}.log").write_text(f"line {n}\n")
    summary = collect_json(base / "out", "--only", "files", "--path", src)
    return Path(summary["evidence_dir"])


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_early, "only_thread", lambda: True)


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch, alone: None) -> tuple[list[int], list[int]]:
    """(sizes the parent hashed itself, pids of the children forked)."""
    monkeypatch.setattr(verify_early, "MIN_TOTAL", 0)
    hashed: list[int] = []
    forked: list[int] = []
    real_hash, real_start = verify_files.sha256_fd, EarlyHashes.start

    def parent_hash(fd: int, buf: bytearray | None = None) -> tuple[str, int]:
        digest, size = real_hash(fd, buf)
        hashed.append(size)
        return digest, size

    def start(self: EarlyHashes, hasher: verify_early.Hasher) -> None:
        real_start(self, hasher)
        if self.pid is not None:
            forked.append(self.pid)

    monkeypatch.setattr(verify_files, "sha256_fd", parent_hash)
    monkeypatch.setattr(EarlyHashes, "start", start)
    return hashed, forked


def _start(early: EarlyHashes, *files: tuple[bytes, os.stat_result]) -> None:
    """Offer ``files`` and fork the child whatever their size (over the threshold)."""
    for rel, st in files:
        early.offer(rel, st)
    early.total = max(early.total, verify_early.MIN_TOTAL)
    early.start(walked_hasher(early.root_fd))


def _big_files(evidence: Path) -> list[Path]:
    return sorted(p for p in evidence.rglob("big*.bin"))


def test_big_files_are_hashed_by_the_child_only(
    collected: Path, spied: tuple[list[int], list[int]]
) -> None:
    hashed, forked = spied
    result = verify_evidence(collected)
    assert result.ok, result.problems
    assert result.files_ok >= 24
    assert len(forked) == 1
    assert hashed and max(hashed) < BIG_FILE  # the small ones only, here
    assert len(_big_files(collected)) == 4


def test_a_changed_big_file_is_caught_through_the_child(
    collected: Path, tmp_path: Path, spied: tuple[list[int], list[int]]
) -> None:
    hashed, forked = spied
    evidence = copy_evidence(collected, tmp_path)
    victim = _big_files(evidence)[2]
    victim.chmod(0o644)
    with victim.open("r+b") as f:
        f.seek(BIG_FILE // 2)
        byte = f.read(1)
        f.seek(BIG_FILE // 2)
        f.write(bytes([byte[0] ^ 1]))
    result = verify_evidence(evidence)
    assert not result.ok
    changed = [v for v in result.file_problems if v.status == "changed"]
    assert [v.path for v in changed] == [str(victim.relative_to(evidence))]
    assert "SHA-256 differs from the journal" in changed[0].detail
    assert forked and max(hashed) < BIG_FILE


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_the_command_hashes_big_files_in_a_child_and_reports_a_changed_one(
    tmp_path: Path,
) -> None:
    """End to end, over the fork's threshold: the real ``verify`` opens the big files in
    another process than the one that reads the journal, and still finds a change."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(3):
        (src / f"big{n}.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    evidence = Path(summary["evidence_dir"])
    trace = tmp_path / "trace"
    run_cli = [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=openat",
        "-o",
        trace,
        sys.executable,
        "-c",
        VERIFY_CODE,
        "-q",
    ]
    done = subprocess.run([*run_cli, evidence], capture_output=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
    opened: dict[str, set[str]] = {}
    for line in trace.read_text().splitlines():
        pid, _, call = line.partition(" ")
        for name in ("custody.jsonl", "big0.bin", "big1.bin", "big2.bin"):
            if f'"{name}"' in call or f'/{name}"' in call:
                opened.setdefault(name, set()).add(pid)
    [reader] = opened["custody.jsonl"]
    for name in ("big0.bin", "big1.bin", "big2.bin"):
        assert opened[name] and reader not in opened[name], (name, opened)
    big = _big_files(evidence)[1]
    big.chmod(0o644)
    with big.open("r+b") as f:
        f.seek(7 * 1024 * 1024)
        f.write(b"planted")
    run = verify(evidence)
    assert run.returncode == 1
    assert b"SHA-256 differs from the journal" in run.stdout + run.stderr


def test_a_file_swapped_since_the_walk_is_not_taken_from_the_child(
    tmp_path: Path, alone: None
) -> None:
    (tmp_path / "d").mkdir()
    victim, other = tmp_path / "d" / "f.bin", tmp_path / "other.bin"
    victim.write_bytes(b"a" * BIG_FILE)
    other.write_bytes(b"b" * BIG_FILE)
    walked = os.lstat(victim)
    os.replace(other, victim)  # same name, another inode, after the walk saw it
    with EarlyHashes(tmp_path) as early:
        _start(early, (b"d/f.bin", walked))
        assert early.pid is not None
        assert early.digest(b"d/f.bin", s64(walked.st_dev), s64(walked.st_ino)) is None
    now = os.lstat(victim)
    with EarlyHashes(tmp_path) as early:  # the file it is now: hashed
        _start(early, (b"d/f.bin", now))
        digest = early.digest(b"d/f.bin", s64(now.st_dev), s64(now.st_ino))
    assert digest == hashlib.sha256(b"b" * BIG_FILE).hexdigest()


def test_a_symlinked_directory_is_not_followed_by_the_child(tmp_path: Path, alone: None) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.bin").write_bytes(b"x" * BIG_FILE)
    root = tmp_path / "root"
    root.mkdir()
    (root / "d").symlink_to(outside)
    st = os.lstat(outside / "f.bin")
    with EarlyHashes(root) as early:
        _start(early, (b"d/f.bin", st))
        assert early.pid is not None
        assert early.digest(b"d/f.bin", s64(st.st_dev), s64(st.st_ino)) is None


def test_no_child_beside_other_threads(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * BIG_FILE)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with EarlyHashes(tmp_path) as early:
            _start(early, (b"f.bin", os.lstat(tmp_path / "f.bin")))
            assert early.pid is None
    finally:
        stop.set()
        other.join()


def test_an_abandoned_child_is_killed_and_reaped(tmp_path: Path, alone: None) -> None:
    for n in range(8):
        (tmp_path / f"f{n}.bin").write_bytes(b"x" * BIG_FILE)
    with EarlyHashes(tmp_path) as early:
        _start(early, *((f"f{n}.bin".encode(), os.lstat(tmp_path / f"f{n}.bin")) for n in range(8)))
        pid = early.pid
        assert pid is not None
        early.abandon()
        assert early.pid is None
        st = os.lstat(tmp_path / "f0.bin")
        assert early.digest(b"f0.bin", s64(st.st_dev), s64(st.st_ino)) is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind


def test_image_pieces_stop_the_child_and_are_checked_by_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alone: None
) -> None:
    """A raw image is hashed piece by piece by the parent: the child is stopped as soon
    as the journal shows pieces, and a damaged byte is still named by its piece."""
    from test_image import take_image

    disk = tmp_path / "vm.img"
    disk.write_bytes(os.urandom(8 * 1024 * 1024))
    _, evidence = take_image(disk, tmp_path / "out", "--piece-size", "1M")
    monkeypatch.setattr(verify_early, "MIN_TOTAL", 0)
    events: list[str] = []
    real_abandon, real_hash_expected = EarlyHashes.abandon, verify_module.hash_expected

    def abandon(self: EarlyHashes) -> None:
        if self.pid is not None:
            events.append("child stopped")
        real_abandon(self)

    def hash_expected(*args: Any) -> None:
        events.append("files hashed")
        real_hash_expected(*args)

    monkeypatch.setattr(EarlyHashes, "abandon", abandon)
    monkeypatch.setattr(verify_module, "hash_expected", hash_expected)
    result = verify_evidence(evidence)
    assert result.ok, result.problems
    assert (result.pieces_checked, result.pieces_ok) == (8, 8)
    assert events[:2] == ["child stopped", "files hashed"]  # while reading the journal
    image = evidence / "artifacts/image/image.raw"
    image.chmod(0o644)
    with open(image, "r+b") as f:
        f.seek(5 * 1024 * 1024 + 7)
        byte = f.read(1)
        f.seek(5 * 1024 * 1024 + 7)
        f.write(bytes([byte[0] ^ 1]))
    result = verify_evidence(evidence)
    [problem] = result.file_problems
    assert "piece 5" in problem.detail and "the other 7 piece(s) match" in problem.detail


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_a_killed_verify_leaves_no_child_hashing(tmp_path: Path) -> None:
    """SIGKILL of the parent (a responder's kill -9, an OOM kill) ends the child too,
    even in the middle of one huge file (between files, its next write would fail)."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(16 * 1024**3)  # sparse: about ten seconds of hashing
    code = (
        "import os, sys, time\n"
        "from manifests.verify_early import EarlyHashes\n"
        "from manifests.verify_files import walked_hasher\n"
        "early = EarlyHashes(sys.argv[1])\n"
        "st = os.lstat(sys.argv[1] + '/big.bin')\n"
        "early.offer(b'big.bin', st)\n"
        "early.start(walked_hasher(early.root_fd))\n"
        "print(early.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, tmp_path], stdout=subprocess.PIPE, cwd=ROOT
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)  # hashing
        parent.kill()
        parent.wait(10)
        for _ in range(100):
            if not _alive(child):
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the child went on hashing after its parent was killed")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if child and _alive(child):
            os.kill(child, 9)
