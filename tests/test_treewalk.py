"""The one directory walker (manifests.treewalk) and the long-path helpers, on their own:
order, identities, trees 5,000 levels deep within a small descriptor limit, directories
moved or replaced while they are walked."""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from deeptree import make_deep, scratch

from manifests import longpath, treewalk
from manifests.treewalk import Entry, open_beneath, walk

DEPTH = 5000


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    """A directory for deep trees, removed by the test itself (not by shutil.rmtree)."""
    with scratch(tmp_path) as base:
        yield base


def _walk(top: Path, **kw: object) -> tuple[list[Entry], list[tuple[bytes, OSError]]]:
    errors: list[tuple[bytes, OSError]] = []
    entries = list(walk(os.fsencode(top), lambda p, e: errors.append((p, e)), **kw))  # type: ignore[arg-type]
    return entries, errors


def _ident(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def test_order_identities_symlinks_and_empty_directories(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "b" / "c").mkdir(parents=True)
    (top / "a" / "empty").mkdir(parents=True)
    (top / "z.txt").write_bytes(b"z")
    (top / "b" / "y.txt").write_bytes(b"y")
    (top / "b" / "c" / "x.txt").write_bytes(b"x")
    (top / "link").symlink_to(top / "b")  # to a directory: listed, never entered
    entries, errors = _walk(top, lstat=True, empty_dirs=True)
    assert errors == []
    assert [(e.rel, e.empty_dir) for e in entries] == [
        (b"link", False),
        (b"z.txt", False),
        (b"a/empty", True),
        (b"b/y.txt", False),
        (b"b/c/x.txt", False),
    ]
    by_rel = {e.rel: e for e in entries}
    assert by_rel[b"b/c/x.txt"].parent == _ident(top / "b" / "c")
    assert by_rel[b"a/empty"].parent == _ident(top / "a")
    assert by_rel[b"link"].stat is not None and by_rel[b"link"].stat.st_mode & 0o170000 == 0o120000
    assert all(e.path == os.path.join(os.fsencode(top), e.rel) for e in entries)
    plain, _ = _walk(top)
    assert [e.rel for e in plain] == [e.rel for e in entries if not e.empty_dir]
    assert all(e.stat is None for e in plain)


def test_exclude_ignore_and_max_depth(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "keep" / "deeper").mkdir(parents=True)
    (top / "skip").mkdir()
    (top / "evidence").mkdir()
    for rel in ("keep/k", "keep/deeper/d", "skip/s", "evidence/e", "t"):
        (top / rel).write_bytes(b".")
    excluded = frozenset({_ident(top / "skip")})
    entries, _ = _walk(top, exclude=excluded, ignore=frozenset({b"evidence"}))
    assert [e.rel for e in entries] == [b"t", b"keep/k", b"keep/deeper/d"]
    shallow, _ = _walk(top, max_depth=2)
    assert b"keep/deeper/d" not in [e.rel for e in shallow]
    assert b"keep/k" in [e.rel for e in shallow]


def test_five_thousand_levels_within_a_small_descriptor_limit(deep: Path) -> None:
    """Past PATH_MAX and the recursion limit, with far fewer descriptors than levels."""
    bottom = make_deep(deep, DEPTH, files_at=(0, 2500, DEPTH - 1))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    baseline = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (baseline + treewalk.MAX_OPEN_DIRS + 8, hard))
    try:
        peak, found, errors = 0, [], []
        for entry in walk(os.fsencode(deep), lambda p, e: errors.append(e), lstat=True):
            peak = max(peak, len(os.listdir("/proc/self/fd")))
            found.append(entry.rel)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert errors == []
    assert found[0] == b"f0" and found[-1] == bottom and len(found) == 4
    assert peak - baseline <= treewalk.MAX_OPEN_DIRS + 2


def test_a_comb_reopens_closed_directories_and_misses_nothing(
    deep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every level has a second subdirectory, visited on the way back up, after the
    budget closed the descriptors of the levels above."""
    make_deep(deep, 300)
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(300):
        os.mkdir(b"e", dir_fd=fd)
        os.close(os.open(b"e/leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        deeper = os.open(b"d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(fd)
    reference, _ = _walk(deep)
    monkeypatch.setattr(treewalk, "MAX_OPEN_DIRS", 3)
    entries, errors = _walk(deep)
    assert errors == []
    assert [e.rel for e in entries] == [e.rel for e in reference]
    assert len(entries) == 301


def _four_levels(top: Path) -> None:
    (top / "a" / "b" / "c" / "d" / "e").mkdir(parents=True)
    (top / "a" / "b" / "c" / "d" / "g").mkdir()
    (top / "a" / "b" / "c" / "d" / "e" / "f.txt").write_bytes(b"f")
    (top / "a" / "b" / "c" / "d" / "g" / "h.txt").write_bytes(b"h")


def test_a_directory_moved_away_mid_walk_is_found_again_by_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The way back up through '..' leads elsewhere once the current directory moved;
    its parent is then reopened from the top, name by name, each checked."""
    top = tmp_path / "top"
    _four_levels(top)
    monkeypatch.setattr(treewalk, "MAX_OPEN_DIRS", 2)
    errors: list[bytes] = []
    entries = walk(os.fsencode(top), lambda p, e: errors.append(p))
    assert next(entries).rel == b"a/b/c/d/e/f.txt"
    os.rename(top / "a" / "b" / "c" / "d" / "e", top / "moved")
    assert [e.rel for e in entries] == [b"a/b/c/d/g/h.txt"] and errors == []


def test_a_directory_replaced_mid_walk_is_reported_not_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, and its parent was replaced too: the walk down from the top finds another
    directory under that name, reports it and does not list it."""
    top = tmp_path / "top"
    _four_levels(top)
    monkeypatch.setattr(treewalk, "MAX_OPEN_DIRS", 2)
    errors: list[tuple[bytes, OSError]] = []
    entries = walk(os.fsencode(top), lambda p, e: errors.append((p, e)))
    assert next(entries).rel == b"a/b/c/d/e/f.txt"
    d = top / "a" / "b" / "c" / "d"
    os.rename(d / "e", top / "moved")
    os.rename(d, tmp_path / "old-d")
    (d / "g").mkdir(parents=True)
    (d / "g" / "planted").write_bytes(b"not the listed directory")
    assert list(entries) == []
    assert [p for p, _ in errors] == [os.fsencode(d)]
    assert errors[0][1].errno == errno.ESTALE


def test_open_beneath_at_any_depth_and_never_through_a_symlink(deep: Path) -> None:
    bottom = make_deep(deep, DEPTH)
    root = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = open_beneath(root, bottom, os.O_RDONLY)
        assert os.read(fd, 100) == b"at the bottom\n"
        os.close(fd)
        (deep / "link").symlink_to(deep / "d")
        with pytest.raises(OSError) as raised:
            open_beneath(root, b"link/d/bottom.txt", os.O_RDONLY)
        assert raised.value.errno in (errno.ELOOP, errno.ENOTDIR)
        assert raised.value.filename == b"link"
        with pytest.raises(ValueError):
            open_beneath(root, b"d/../link", os.O_RDONLY)
    finally:
        os.close(root)


def test_a_directory_path_past_path_max_is_opened_in_pieces(deep: Path) -> None:
    """As one open(2) would if PATH_MAX did not exist: symlinks on the way are followed
    (the caller checks what it got), the last name is not."""
    make_deep(deep, DEPTH)
    (deep / "via").symlink_to(deep / "d")
    long = os.fsencode(deep) + b"/via" + b"/d" * (DEPTH - 1)
    assert len(long) > 4 * longpath.PIECE
    fd = longpath.open_dir(long)
    try:
        assert os.listdir(fd) == ["bottom.txt"]
    finally:
        os.close(fd)
    fd = longpath.open_dir(b"/etc")
    os.close(fd)
    with pytest.raises(OSError) as raised:
        longpath.open_dir(os.fsencode(deep) + b"/via")
    assert raised.value.errno in (errno.ELOOP, errno.ENOTDIR)
