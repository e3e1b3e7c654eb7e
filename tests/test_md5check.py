"""The packages check in C (collectors/_md5check.c, ``lanedigest.MD5Check``) names
exactly the files the Python path finds not to be a regular file with the recorded MD5:
matching, modified, missing, symlinks, FIFOs (not blocked on), directories, sockets,
sizes 0 and /proc files whose stat says 0, a file shrunk or grown after the batch was
made, unreadable (EACCES as a user), odd names, recorded sums it cannot compare; across
batches, with a large file held in its lane from one batch into the next, on every
engine. The forked children use it: on a clean tree no file goes through the Python
path, and with the SHA-256 table wanted only the executables do."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import IS_ROOT
from test_md5lanes import ENGINES, _engine
from test_packages import _db
from test_packages_forked import _run

import collectors.pkgforked as pkgforked
from collectors.filedigest import Want, digest_files
from collectors.lanedigest import MD5Check, md5_engine


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).hexdigest().encode()


def _python_says(paths: list[bytes], sums: list[bytes]) -> set[int]:
    """The files the Python path finds not a regular file with the recorded MD5."""
    items = [(k, Want(p, ("md5",))) for k, p in enumerate(paths)]
    return {
        k
        for k, read in digest_files(items, md5_engine="hashlib")
        if read.state != "ok" or read.digests["md5"].encode() != sums[k]
    }


def _check(engine: str, paths: list[bytes], sums: list[bytes], batch: int) -> set[int]:
    """Every file through the C check in batches of ``batch``: the numbers it names."""
    check, named = MD5Check(engine), []
    for start in range(0, len(paths) + 1, batch):
        last = start + batch > len(paths)
        got, held = check.run(paths[start : start + batch], sums[start : start + batch], None, last)
        assert all(k < start + batch for k in got + held)
        named += got
        assert not last or not held
    assert len(named) == len(set(named))
    return set(named)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[bytes]]:
    """Host paths and the MD5s recorded for them, of every kind the check meets."""
    top = tmp_path_factory.mktemp("check")
    paths: list[bytes] = []
    sums: list[bytes] = []

    def add(path: Path | bytes, recorded: bytes) -> None:
        paths.append(os.fsencode(path))
        sums.append(recorded)

    big = os.urandom(9 << 20)  # holds a lane for many batches of small files
    (top / "big").write_bytes(big)
    add(top / "big", _md5(big))
    for n in range(400):
        data = os.urandom(n * 13 % 3000)
        (top / f"f{n}").write_bytes(data)
        add(top / f"f{n}", _md5(data) if n % 37 else _md5(data + b"x"))  # some modified
    for size in (0, 1, 55, 56, 63, 64, 65, 64 * 1024, 64 * 1024 + 1, 200_000):
        data = os.urandom(size)
        (top / f"s{size}").write_bytes(data)
        add(top / f"s{size}", _md5(data))
    add(top / "s0", _md5(b"x"))  # an empty file recorded with content
    add(top / "missing", _md5(b""))
    (top / "link").symlink_to(top / "f1")
    add(top / "link", sums[2])  # the target's digest: still not regular
    os.mkfifo(top / "fifo")  # opened non-blocking, never read: no writer needed
    add(top / "fifo", _md5(b""))
    (top / "dir").mkdir()
    add(top / "dir", _md5(b""))
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.fsdecode(top / "sock"))
    add(top / "sock", _md5(b""))
    add(b"/dev/null", _md5(b""))  # a device, even with an empty stream's digest
    version = Path("/proc/version").read_bytes()  # stat says 0: read on to the end
    add(b"/proc/version", _md5(version))
    odd = os.fsencode(top) + b"/odd \n\xff\xfe name"
    Path(os.fsdecode(odd)).write_bytes(b"odd")
    add(odd, _md5(b"odd"))
    add(os.fsencode(top / "f2"), sums[3].upper())  # capitals never match in Python either
    add(os.fsencode(top / "f2"), sums[3][:31])
    add(os.fsencode(top / "f2"), b"z" * 32)
    return paths, sums


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("batch", [1, 7, 64, 10_000])
def test_it_names_what_the_python_path_finds_odd(
    tree: tuple[list[bytes], list[bytes]], name: str, batch: int
) -> None:
    engine = _engine(name)
    paths, sums = tree
    expected = _python_says(paths, sums)
    assert len(expected) > 20 and 0 not in expected  # the big one matches
    assert _check(engine, paths, sums, batch) == expected


@pytest.mark.skipif(not IS_ROOT, reason="switching to another user needs root")
def test_unreadable_as_a_user_is_named() -> None:
    """As nobody (in a child), a file of mode 000 gives EACCES, and O_NOATIME on a file
    not its own EPERM (opened again without it): named as Python finds them."""
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o755)
        locked, readable = Path(top, "locked"), Path(top, "readable")
        locked.write_bytes(b"secret")
        locked.chmod(0)
        readable.write_bytes(b"open")
        readable.chmod(0o644)
        paths, sums = [os.fsencode(locked), os.fsencode(readable)], [_md5(b"secret"), _md5(b"open")]
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child's coverage is not collected)
            try:
                os.setgid(65534)
                os.setuid(65534)
                same = _check(md5_engine(), paths, sums, 4) == _python_says(paths, sums) == {0}
                os._exit(0 if same else 3)
            except BaseException:
                os._exit(4)
        assert os.waitpid(pid, 0)[1] == 0


def test_a_file_shrunk_or_grown_after_it_was_listed(tmp_path: Path) -> None:
    """A file whose size changed is read to its end as it is now: its digest decides."""
    grown, shrunk = tmp_path / "grown", tmp_path / "shrunk"
    grown.write_bytes(b"a" * 100)
    shrunk.write_bytes(b"b" * 100_000)
    paths = [os.fsencode(grown), os.fsencode(shrunk)]
    sums = [_md5(b"a" * 100), _md5(b"b" * 100_000)]
    grown.write_bytes(b"a" * 100_000)
    shrunk.write_bytes(b"b" * 10)
    assert _check(md5_engine(), paths, sums, 2) == _python_says(paths, sums) == {0, 1}


def test_the_if_exec_marks(tmp_path: Path) -> None:
    """Marked files with an execute bit go back (their SHA-256 is wanted), whatever their
    digest; unmarked ones, and marked ones without the bit, are checked."""
    names = ["tool", "data", "tool2"]
    for n in names:
        (tmp_path / n).write_bytes(n.encode())
    os.chmod(tmp_path / "tool", 0o755)
    os.chmod(tmp_path / "tool2", 0o711)
    paths = [os.fsencode(tmp_path / n) for n in names]
    sums = [_md5(n.encode()) for n in names]
    check = MD5Check(md5_engine())
    assert check.run(paths, sums, bytes([1, 1, 0]), True) == ([0], [])


@pytest.fixture()
def clean(tmp_path: Path) -> Path:
    """A tree whose every package file matches: executables, libraries and data."""
    root = tmp_path / "host"
    files = {f"/usr/bin/t{n}": f"t{n}".encode() for n in range(40)}
    files |= {f"/usr/lib/l{n}.so": b"l" * n for n in range(40)}
    files |= {f"/usr/share/d/{n}": os.urandom(n * 101) for n in range(500)}
    _db(root, "p", files, {})
    for path, data in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(data)
        if "/bin/" in path:
            os.chmod(root / path.lstrip("/"), 0o755)
    time.sleep(1.1)  # settled: old enough for the digests to be handed on
    return root


@pytest.mark.skipif(
    not pkgforked.usable(md5_engine()), reason="no fork, one core or no MD5 lanes here"
)
@pytest.mark.parametrize("table", [False, True])
def test_children_read_in_python_only_what_c_cannot(
    clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: bool
) -> None:
    """On a clean tree no file goes through the Python path (no table wanted), or only
    the executables and libraries of the system directories (their SHA-256 for
    ``executables``); a child raising on any other is the collector failing."""
    real = pkgforked.digest_files

    def only_executables(items: Any, *args: Any, **kw: Any) -> Iterator[Any]:
        items = list(items)
        for tag, _ in items:
            path = tag[0]
            if not table or not (path.startswith(b"/usr/bin/") or path.endswith(b".so")):
                raise AssertionError(f"{path!r} read in Python")
        yield from real(items, *args, **kw)

    monkeypatch.setattr(pkgforked, "digest_files", only_executables)
    if not table:
        monkeypatch.setattr(pkgforked, "_share", _without_table(pkgforked._share))
    report, findings, _, digests = _run(tmp_path, clean)
    assert b'"modified": []' in report and not findings
    assert len(digests) == (80 if table else 0)


def _without_table(share: Any) -> Any:
    """The children's share as with no SHA-256 table wanted (no Extra, no screen)."""

    def made(wants: Any, part: int, parts: int, expect: Any, *_: Any) -> Any:
        return share(wants, part, parts, expect, None, md5_engine(), None)

    return made


def test_modes_seen(tree: tuple[list[bytes], list[bytes]]) -> None:
    """The tree has what it says (a guard on the fixture)."""
    kinds = set()
    for p in tree[0]:
        try:
            kinds.add(stat.S_IFMT(os.lstat(p).st_mode))
        except FileNotFoundError:
            kinds.add(0)
    assert {stat.S_IFREG, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFDIR, stat.S_IFSOCK, 0} <= kinds
