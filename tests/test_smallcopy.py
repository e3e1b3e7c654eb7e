"""The C copy of a batch's small files (collectors/_smallcopy.c, collectors/nativecopy.py):
its SHA-256 is hashlib's, what it copies is byte for byte the source with the source's
times and a read-only mode, its stat is os.fstat's, and every surprise (a symlink, a
FIFO, a swapped file, a file grown past the room, a taken name, a write that fails)
returns None with nothing left behind, so that the Python path copies it again and
journals what it finds. Through the engine, the records are those the Python path
makes, and a file swapped between the walk and the copy is still refused."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, journal_records, verify

from collectors import nativecopy
from manifests.localdir import CreateDir

_smallcopy = nativecopy._smallcopy
needs_native = pytest.mark.skipif(_smallcopy is None, reason="the extension was not built")
pytestmark = needs_native

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FIELDS = [
    "st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
    "st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
    "st_blksize", "st_blocks", "st_rdev",
]  # fmt: skip


@pytest.mark.parametrize("native", [True, False], ids=["sha-extensions", "portable"])
def test_its_sha256_is_hashlibs_at_every_length_near_a_block_boundary(native: bool) -> None:
    assert _smallcopy is not None
    if native and not _smallcopy.native():
        pytest.skip("this CPU has no SHA extensions")
    rng = random.Random(14)
    lengths = [*range(0, 260), *(rng.randrange(260, 70_000) for _ in range(200)), 1 << 20]
    for n in lengths:
        data = rng.randbytes(n)
        assert _smallcopy.sha256(data, native) == hashlib.sha256(data).digest(), n


def _copy(src: Path, out_dir: Path, room: int = 1 << 20, name: str | None = None):
    before = os.lstat(src)
    src_dir = os.open(src.parent, os.O_RDONLY | os.O_DIRECTORY)
    out_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        place = CreateDir(out_fd, _CREATE, False)
        return nativecopy.copy_small(
            src_dir, os.fsencode(src.name), before, room, place, os.fsencode(name or src.name)
        )
    finally:
        os.close(src_dir)
        os.close(out_fd)


def test_a_file_is_copied_with_its_times_read_only_and_its_stat_is_fstats(
    tmp_path: Path,
) -> None:
    src = tmp_path / "a.log"
    data = os.urandom(200_001)
    src.write_bytes(data)
    os.utime(src, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    out = tmp_path / "out"
    out.mkdir()
    copied = _copy(src, out)
    assert copied is not None
    assert copied.size == copied.size_after == len(data)
    assert copied.sha256 == hashlib.sha256(data).hexdigest()
    expected = os.stat(src)
    for field in _FIELDS:
        assert getattr(copied.opened, field) == getattr(expected, field), field
    assert copied.mtime_ns_after == expected.st_mtime_ns
    stored = out / "a.log"
    st = stored.stat()  # before reading it moves its atime
    assert stat.S_IMODE(st.st_mode) == 0o444 & ~_umask()
    assert (st.st_atime_ns, st.st_mtime_ns) == (expected.st_atime_ns, expected.st_mtime_ns)
    assert stored.read_bytes() == data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_empty_file_is_copied(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "out").mkdir()
    copied = _copy(tmp_path / "empty", tmp_path / "out")
    assert copied is not None and copied.size == 0
    assert copied.sha256 == hashlib.sha256(b"").hexdigest()
    assert (tmp_path / "out" / "empty").read_bytes() == b""


def _nothing_in(out: Path) -> bool:
    return not list(out.iterdir())


def test_a_symlink_a_fifo_or_a_file_swapped_since_its_lstat_goes_back_to_python(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "target"
    target.write_bytes(b"secret")
    src_dir = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    out_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    place = CreateDir(out_fd, _CREATE, False)
    try:
        (tmp_path / "link").symlink_to(target)
        # Told the link is the regular file it points to (a lstat raced): O_NOFOLLOW.
        assert (
            nativecopy.copy_small(src_dir, b"link", os.stat(target), 1 << 20, place, b"x") is None
        )
        os.mkfifo(tmp_path / "fifo")
        fifo = os.lstat(tmp_path / "fifo")
        assert nativecopy.copy_small(src_dir, b"fifo", fifo, 1 << 20, place, b"x") is None
        swapped = tmp_path / "swapped"
        swapped.write_bytes(b"first")
        seen = os.lstat(swapped)
        (tmp_path / "other").write_bytes(b"planted")
        os.rename(tmp_path / "other", swapped)
        assert nativecopy.copy_small(src_dir, b"swapped", seen, 1 << 20, place, b"x") is None
    finally:
        os.close(src_dir)
        os.close(out_fd)
    assert _nothing_in(out)


def test_a_file_larger_than_the_room_left_goes_back_to_python(tmp_path: Path) -> None:
    (tmp_path / "grown").write_bytes(b"y" * 5000)
    (tmp_path / "out").mkdir()
    assert _copy(tmp_path / "grown", tmp_path / "out", room=4999) is None
    assert _nothing_in(tmp_path / "out")
    assert _copy(tmp_path / "grown", tmp_path / "out", room=5000) is not None


def test_a_taken_name_is_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"evidence")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_bytes(b"someone else's")
    assert _copy(tmp_path / "a", out) is None
    assert (out / "a").read_bytes() == b"someone else's"


def test_a_write_that_fails_removes_the_partial_copy(tmp_path: Path) -> None:
    """A real failed write: a file-size limit of 1000 bytes (EFBIG; Python ignores
    SIGXFSZ) under a 5000-byte copy, in a child so the limit binds nothing else."""
    (tmp_path / "big").write_bytes(b"z" * 5000)
    (tmp_path / "out").mkdir()
    code = f"""
import os, resource, sys
sys.path[:0] = [{str(ROOT)!r}, {str(Path(__file__).parent)!r}]
from pathlib import Path
from test_smallcopy import _copy
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
print(_copy(Path({str(tmp_path / "big")!r}), Path({str(tmp_path / "out")!r})))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert _nothing_in(tmp_path / "out")


def _tree(src: Path) -> None:
    rng = random.Random(3)
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for n in range(70):
            (src / f"d{d}" / f"f{n}.log").write_bytes(rng.randbytes(rng.randrange(0, 9000)))
    (src / "d0" / "odd\nname").write_bytes(b"odd")


def _artifacts(evidence: Path) -> dict[str, dict]:
    keep = ("path", "size", "sha256", "source", "range", "size_at_open", "size_after")
    return {
        r["path"]: {k: r[k] for k in keep}
        for r in journal_records(evidence)
        if r["type"] == "artifact" and r["collector"] == "files"
    }


def test_through_the_engine_records_are_the_python_paths_and_verify(
    tmp_path: Path,
) -> None:
    """The same tree collected with the C copy and (PRESERVE_NO_NATIVE_COPY, read only
    by this test's child) without it: the same artifact records, both verify; and the
    C copy did copy them (strace would show it; here the count of calls)."""
    src = tmp_path / "src"
    _tree(src)
    runs = {}
    for label, native in (("c", True), ("python", False)):
        code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from collectors import nativecopy
calls = [0]
real = nativecopy.copy_small
def counted(*a, **k):
    calls[0] += 1
    return real(*a, **k)
nativecopy.copy_small = counted
nativecopy.AVAILABLE = {native!r}
import atexit
atexit.register(lambda: open({str(tmp_path / label)!r}, "w").write(str(calls[0])))
sys.argv = ["preserve", "--json", "-q", "-o", {str(tmp_path / ("out-" + label))!r},
            "--only", "files", "--path", {str(src)!r}]
from agent._cli import main
main()
"""
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr.decode()
        evidence = next((tmp_path / f"out-{label}").iterdir())
        assert verify(evidence).returncode == 0
        runs[label] = (_artifacts(evidence), int((tmp_path / label).read_text()))
    (c_records, c_calls), (py_records, py_calls) = runs["c"], runs["python"]
    assert len(c_records) == 211
    assert c_records == py_records
    assert c_calls == 211 and py_calls == 0


def test_a_file_swapped_for_a_symlink_after_the_walk_is_still_refused(tmp_path: Path) -> None:
    """Between the walk's lstat and the copy: the C copy refuses the link (O_NOFOLLOW)
    and the Python path journals it, as before; the secret it points to is not stored."""
    src = tmp_path / "src"
    _tree(src)
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not copy me")
    code_out = tmp_path / "out"
    code = f"""
import os, sys
sys.path[:0] = [{str(ROOT)!r}, {str(Path(__file__).parent)!r}]
from collectors import nativecopy
real = nativecopy.copy_small
def swap(dir_fd, name, before, room, out, out_name):
    if name == b"f5.log" and not os.path.islink(os.path.join({str(src / "d1")!r}, "f5.log")):
        if os.fstat(dir_fd).st_ino == os.stat({str(src / "d1")!r}).st_ino:
            os.unlink(b"f5.log", dir_fd=dir_fd)
            os.symlink({str(secret)!r}, b"f5.log", dir_fd=dir_fd)
    return real(dir_fd, name, before, room, out, out_name)
nativecopy.copy_small = swap
sys.argv = ["preserve", "--json", "-q", "-o", {str(code_out)!r}, "--only", "files",
            "--path", {str(src)!r}]
from agent._cli import main
main()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
    assert done.returncode in (0, 1), done.stderr.decode()
    evidence = next(code_out.iterdir())
    records = journal_records(evidence)
    about = [r for r in records if r.get("source", {}).get("path", "").endswith("d1/f5.log")]
    assert [r["type"] for r in about] == ["skipped"], about
    assert "symlink" in about[0]["reason"]
    stored = [p.read_bytes() for p in (evidence / "artifacts").rglob("*") if p.is_file()]
    assert b"do not copy me" not in stored
    assert verify(evidence).returncode == 0


def test_a_name_with_a_nul_byte_is_refused_not_cut_short(tmp_path: Path) -> None:
    """C would open ``a`` for ``a\\0b``: the call refuses it, as os.open does."""
    (tmp_path / "a").write_bytes(b"not this one")
    (tmp_path / "out").mkdir()
    src_dir = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    out_fd = os.open(tmp_path / "out", os.O_RDONLY | os.O_DIRECTORY)
    seen = os.lstat(tmp_path / "a")
    try:
        with pytest.raises(ValueError):
            nativecopy.copy_small(
                src_dir, b"a\0b", seen, 1 << 20, CreateDir(out_fd, _CREATE, False), b"a"
            )
        with pytest.raises(ValueError):
            nativecopy.copy_small(
                src_dir, b"a", seen, 1 << 20, CreateDir(out_fd, _CREATE, False), b"x\0y"
            )
    finally:
        os.close(src_dir)
        os.close(out_fd)
    assert _nothing_in(tmp_path / "out")
