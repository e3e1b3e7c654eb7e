"""The timeline's per-directory lister in C (collectors/_bodylist.c) writes the Python
lister's bodyfile lines byte for byte: on a tree of hostile names (pipes, backslashes,
newlines, control bytes, bytes that are not UTF-8, the longest names) and every file type,
on /usr, with excluded directories and devices, with an entry listed but gone before its
stat and one that fails (a FUSE directory that lists them, tests/badfs.c), and its
escaping and mode strings against body_name and mode_string over every mode and a wide
set of byte strings. Where statx is refused the Python lister takes over."""

from __future__ import annotations

import errno
import itertools
import os
import random
import shutil
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_image import badfs, badfs_binary  # noqa: F401  (the FUSE file system, with ghosts)

from collectors import bodywalk
from collectors.bodywalk import BodyWalker, body_name, mode_string

_bodylist: Any = bodywalk._bodylist
needs_c = pytest.mark.skipif(_bodylist is None, reason="the extension was not built")


class Listed:
    """One walk's output: the bytes, the counts, the errors, and how often C listed."""

    def __init__(self, top: bytes, in_c: bool, **kw: Any) -> None:
        chunks: list[bytes] = []
        self.errors: list[tuple[bytes, int | None]] = []
        self.walker = BodyWalker(
            chunks.append, lambda path, e: self.errors.append((path, e.errno)), **kw
        )
        self.c_calls = 0
        clist = self.walker._clist
        if in_c:
            assert clist is not None

            def counted(*args: Any) -> Any:
                self.c_calls += 1
                return clist(*args)

            self.walker._clist = counted
        else:
            self.walker._clist = None
        self.walker.walk(top)
        self.data = b"".join(chunks)
        self.chunks = chunks
        w = self.walker
        self.counts = (w.entries, w.births, w.vanished)


def both(top: bytes, **kw: Any) -> tuple[Listed, Listed]:
    """The C and the Python lister on the same tree: the same bytes, counts and errors.
    A walk first, for the reading of each directory to have set its access time (relatime
    sets it once after a change), or the second lister would see another."""
    Listed(top, False, **kw)
    c, py = Listed(top, True, **kw), Listed(top, False, **kw)
    assert c.c_calls > 0 and py.c_calls == 0
    assert c.data == py.data
    assert c.counts == py.counts and c.errors == py.errors
    return c, py


ODD = [
    b"pipe|name",
    b"back\\slash",
    b"new\nline",
    b"ctl\x01\x1f\x7f\x1b[31m",
    b"\xff\xfe not utf-8",
    b"cut \xe2\x82",
    b"surrogate \xed\xa0\x80",
    b"above \xf4\x90\x80\x80",
    b"overlong \xc0\xaf \xe0\x80\xaf \xf0\x80\x80\x80",
    b"lone \x80\xbf continuations",
    "fine é € 😀 ü".encode(),
    b"x" * 255,
    "é".encode() * 127,
    b"\xff" * 255,
    b" ",
    b"-",
    b"...",
]


def _odd_tree(top: Path) -> None:
    odd_dir = top / os.fsdecode(b"dir|\\\n\xff\xe2\x82")
    for where in (top, odd_dir, odd_dir / "sub"):
        where.mkdir(exist_ok=True)
        for name in ODD:
            (where / os.fsdecode(name)).write_bytes(b"x" * len(name))
    os.mkfifo(top / "fifo")
    os.symlink("nowhere", top / "dangling")
    os.symlink(str(odd_dir), top / "to-dir")  # never followed: a link, not a directory
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.fsencode(top / "sock"))
    for mode, name in ((0o4755, "suid"), (0o2644, "sgid"), (0o1777, "sticky"), (0o7000, "S")):
        (top / name).write_bytes(b"")
        os.chmod(top / name, mode)
    os.mkdir(top / "tmpdir")
    os.chmod(top / "tmpdir", 0o1777)
    (top / "empty").mkdir()
    os.utime(top / "S", (-1, -(1 << 40)))  # before 1970: negative seconds
    os.utime(top / "sgid", ((1 << 40) + 1, 0))
    if os.geteuid() == 0:
        os.mknod(top / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(top / "loop", stat.S_IFBLK | 0o660, os.makedev(7, 200))
        os.chown(top / "suid", 4_000_000_000, 12345)  # uids past 2**31 are unsigned
    # Listed once now: a directory's first listing moves its atime (relatime), which
    # made two listings compared byte for byte differ when a second ticked between them.
    for _ in os.walk(top):
        pass


def test_the_c_lister_is_built_and_used_where_a_compiler_is() -> None:
    if shutil.which("gcc") is None:
        pytest.skip("no compiler: the Python lister is the one")
    assert _bodylist is not None
    assert BodyWalker(lambda b: None, lambda p, e: None)._clist is _bodylist.list_dir


@needs_c
def test_odd_names_and_every_file_type_the_same_bytes(tmp_path: Path) -> None:
    _odd_tree(tmp_path)
    c, _ = both(os.fsencode(tmp_path))
    lines = c.data.split(b"\n")[:-1]
    assert len(lines) == c.counts[0] == 3 * len(ODD) + 2 + 10 + 2 * (os.geteuid() == 0)
    for line in lines:  # no name added a field, a line, or a byte that is not UTF-8
        assert line.count(b"|") == 10
        line.decode()
    kinds = {line.split(b"|")[3][:1] for line in lines}
    assert {b"r", b"d", b"l", b"p", b"s"} <= kinds
    top = os.fsencode(tmp_path)
    assert b"0|" + top + b"/dir\\x7c\\x5c\\x0a\\xff\\xe2\\x82/sub/pipe\\x7cname|" in c.data


@needs_c
def test_excluded_directories_and_devices_are_listed_not_entered(tmp_path: Path) -> None:
    for sub in ("a", "b", "c"):
        (tmp_path / sub / "deeper").mkdir(parents=True)
        (tmp_path / sub / "deeper" / "file").write_bytes(b"")
    st = os.stat(tmp_path / "b")
    c, _ = both(os.fsencode(tmp_path), exclude=frozenset({(st.st_dev, st.st_ino)}))
    names = [line.split(b"|")[1] for line in c.data.splitlines()]
    top = os.fsencode(tmp_path)
    assert top + b"/b" in names and top + b"/a/deeper/file" in names
    assert not [n for n in names if n.startswith(top + b"/b/")]
    c, _ = both(top, exclude_devs=frozenset({st.st_dev}))
    assert sorted(line.split(b"|")[1] for line in c.data.splitlines()) == [
        top + b"/a",
        top + b"/b",
        top + b"/c",
    ]
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _, count, _, subdirs, errors = _bodylist.list_dir(
            fd, b"/x", frozenset({(st.st_dev, st.st_ino)}), frozenset()
        )
    finally:
        os.close(fd)
    a, cc = os.stat(tmp_path / "a"), os.stat(tmp_path / "c")
    assert count == 3 and not errors
    assert sorted(subdirs) == [(b"a", (a.st_dev, a.st_ino)), (b"c", (cc.st_dev, cc.st_ino))]


@needs_c
def test_an_entry_gone_before_its_stat_is_counted_and_a_failing_one_reported(
    tmp_path: Path,
    badfs: Callable[..., Path],  # noqa: F811
) -> None:
    """A FUSE directory lists "gone" (its stat: ENOENT, a file removed since it was
    listed) and "broken" (EIO): the one counted as vanished, the other an error."""
    backing = tmp_path / "backing"
    backing.write_bytes(b"disk")
    where = badfs(backing, [], ghosts=True).parent
    c, _ = both(os.fsencode(where))
    assert [line.split(b"|")[1] for line in c.data.splitlines()] == [os.fsencode(where / "disk")]
    assert c.counts == (1, c.walker.births, 1)
    assert c.errors == [(os.fsencode(where / "broken"), errno.EIO)]


@needs_c
def test_a_directory_that_cannot_be_read_is_an_error_as_before(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    with pytest.raises(OSError) as raised:
        _bodylist.list_dir(fd, b"/", frozenset(), frozenset())
    assert raised.value.errno == errno.EBADF
    regular = os.open(__file__, os.O_RDONLY)
    try:
        with pytest.raises(NotADirectoryError):
            _bodylist.list_dir(regular, b"/", frozenset(), frozenset())
    finally:
        os.close(regular)


@needs_c
def test_where_statx_is_refused_python_lists_instead(tmp_path: Path) -> None:
    _odd_tree(tmp_path)
    expected = Listed(os.fsencode(tmp_path), False)
    chunks: list[bytes] = []
    walker = BodyWalker(chunks.append, lambda p, e: None)
    walker._clist = lambda *args: None  # what list_dir says on ENOSYS: nothing listed
    walker.walk(os.fsencode(tmp_path))
    assert walker._clist is None and b"".join(chunks) == expected.data


@needs_c
def test_usr_the_same_bytes_in_chunks_of_a_megabyte() -> None:
    c, py = both(b"/usr")
    assert c.counts[0] > 10_000
    assert [len(x) for x in c.chunks[:-1]] and max(len(x) for x in c.chunks) < 4 << 20
    assert all(
        chunk.count(b"\n") >= bodywalk.CHUNK_LINES for chunk in c.chunks[:-1]
    )  # handed over in chunks as before, not one per directory


@needs_c
def test_mode_strings_of_every_mode() -> None:
    for mode in range(1 << 16):
        assert _bodylist.mode_string(mode) == mode_string(mode), oct(mode)


@needs_c
def test_escaping_of_every_short_byte_string_and_random_long_ones() -> None:
    def same(name: bytes) -> None:
        assert _bodylist.body_name(name) == body_name(name).encode(), name

    for n in (1, 2):
        for t in itertools.product(range(256), repeat=n):
            same(bytes(t))
    edges = [0x00, 0x0A, 0x41, 0x5C, 0x7C, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0]
    edges += [0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4]
    edges += [0xF5, 0xFF]
    for t in itertools.product(edges, repeat=4):
        same(bytes(t))
    rng = random.Random(14)
    for _ in range(20_000):
        same(bytes(rng.choice(edges + [rng.randrange(256)]) for _ in range(rng.randrange(40))))


@needs_c
def test_a_directory_of_many_megabytes_of_lines_then_a_small_one(tmp_path: Path) -> None:
    """The lines buffer grows past what it keeps between directories (4 MiB), and is
    let go of: the next directory's lines are its own."""
    big = tmp_path / "big"
    big.mkdir()
    for n in range(18_000):
        (big / f"{n:06d}{'x' * 230}").touch()
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "one").touch()
    c, _ = both(os.fsencode(tmp_path))
    assert c.counts[0] == 18_000 + 3 and len(c.data) > 5 << 20


@needs_c
def test_numbers_of_every_length(tmp_path: Path) -> None:
    """Sizes (sparse files) and times across every count of digits, as str() writes them."""
    for k in range(13):
        for size in {max(10**k - 1, 0), 10**k}:
            with open(tmp_path / f"s{size}", "wb") as f:
                f.truncate(size)
            os.utime(tmp_path / f"s{size}", (size, -size))
    c, _ = both(os.fsencode(tmp_path))
    sizes = {int(line.split(b"|")[6]) for line in c.data.splitlines()}
    assert {9, 10, 99, 100, 10**12 - 1, 10**12} <= sizes
