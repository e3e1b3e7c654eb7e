"""The system walk's per-directory work in C (``_bodylist.list_exec``, used by
collectors/systemwalk.py) finds what the Python walk (``walk_stats``) finds: the same
files in the same order, stat results equal to ``os.stat``'s in every field, the same
birth times and the same errors, on a tree of executables, libraries, plain files,
symlinks, FIFOs, odd names, unreadable directories and an excluded one, and on this
machine's real system directories."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors import systemwalk
from collectors.systemwalk import SystemWalk

needs_c = pytest.mark.skipif(systemwalk._bodylist is None, reason="the extension was not built")
FIELDS = (
    "st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
    "st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
    "st_blksize", "st_blocks", "st_rdev",
)  # fmt: skip


def _plain(walked: SystemWalk) -> tuple[Any, ...]:
    """Everything a consumer can read of a walk, as comparable values."""
    files = {
        top: [(p, tuple(st), tuple(getattr(st, f) for f in FIELDS), b) for p, st, b in found]
        for top, found in walked.files.items()
    }
    errors = {
        top: [(p, type(e), e.errno, e.strerror, e.filename, str(e)) for p, e in errs]
        for top, errs in walked.errors.items()
    }
    return walked.tops, files, errors


def _both(fn: Any, *args: Any) -> tuple[Any, Any]:
    """``fn(*args)`` through the C lister, then through the Python walk."""
    c_module = systemwalk._bodylist
    in_c = _plain(fn(*args))
    systemwalk._bodylist = None
    try:
        in_python = _plain(fn(*args))
    finally:
        systemwalk._bodylist = c_module
    return in_c, in_python


@pytest.fixture
def tree() -> Iterator[Path]:
    """A tree any user can reach (for the walk as nobody), removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="syswalk-"))
    top.chmod(0o755)
    try:
        _fill(top)
        yield top
    finally:
        for d, _, _ in os.walk(top):
            os.chmod(d, 0o755)
        shutil.rmtree(top)


def _fill(top: Path) -> None:
    def put(rel: str | bytes, mode: int) -> None:
        path = os.path.join(os.fsencode(top), os.fsencode(rel))
        with open(path, "wb") as f:
            f.write(b"x" * len(path))
        os.chmod(path, mode)

    for d in ("bin", "lib/deep/er", "lib/excluded", "noread", "nosearch", "odd"):
        (top / d).mkdir(parents=True)
    put("bin/tool", 0o755)
    put("bin/setuid", 0o4711)
    put("bin/readme", 0o644)
    put("lib/libc.so", 0o644)
    put("lib/libz.so.1.2", 0o644)
    put("lib/libz.so1", 0o644)  # not a library name
    put("lib/deep/er/x.so", 0o600)
    put("lib/excluded/hidden", 0o755)
    put("noread/inside", 0o755)
    put("nosearch/inside", 0o755)
    os.symlink("tool", top / "bin/link")
    os.symlink("../bin", top / "lib/bin-link")
    os.mkfifo(top / "bin/fifo", 0o777)
    for name in (b"a|b", b"new\nline", b"\xff\xfe", b"\xe9t\xe9", "été".encode(), b"\xef\xbf\xbd"):
        put(b"odd/" + name, 0o700)
        os.mkdir(os.path.join(os.fsencode(top), b"odd", name + b".d"))
        put(b"odd/" + name + b".d/" + name, 0o711)
    os.utime(top / "bin/tool", ns=(1_000_000_001, 2_000_000_002))
    (top / "noread").chmod(0o311)  # entered but not listed (as nobody)
    (top / "nosearch").chmod(0o644)  # listed, its entries not examined (as nobody)


def _listing(top: Path) -> SystemWalk:
    st = os.stat(top / "lib/excluded")
    return systemwalk._listing(os.fsencode(top), frozenset({(st.st_dev, st.st_ino)}))


@needs_c
def test_the_c_path_is_the_one_taken(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built, the system walk never makes walk_stats's entry per file."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("walk_stats used although the C lister was built")

    monkeypatch.setattr(systemwalk, "walk_stats", refused)
    found = [p for p, _, _ in _listing(tree).files[os.fsencode(tree)]]
    assert os.path.join(os.fsencode(tree), b"bin/tool") in found


@needs_c
def test_c_and_python_walks_agree_on_a_test_tree(tree: Path) -> None:
    in_c, in_python = _both(_listing, tree)
    assert in_c == in_python
    top = os.fsencode(tree)
    names = [os.path.relpath(p, top) for p, _, _ in _listing(tree).files[top]]
    assert b"bin/tool" in names and b"lib/libz.so.1.2" in names and b"odd/\xff\xfe" in names
    assert b"bin/readme" not in names and b"lib/libz.so1" not in names
    assert not any(n.startswith((b"lib/excluded", b"bin/link", b"bin/fifo")) for n in names)


@needs_c
def test_the_stat_results_are_os_stats(tree: Path) -> None:
    top = os.fsencode(tree)
    found = _listing(tree).files[top]
    assert len(found) > 10
    for path, st, birth in found:
        real = os.stat(path, follow_symlinks=False)
        assert st == real
        assert [getattr(st, f) for f in FIELDS] == [getattr(real, f) for f in FIELDS], path
        assert birth is None or birth > 0
    tool = next(st for p, st, _ in found if p.endswith(b"bin/tool"))
    assert (tool.st_atime_ns, tool.st_mtime_ns) == (1_000_000_001, 2_000_000_002)


@needs_c
def test_c_and_python_walks_agree_on_errors_as_nobody(tree: Path) -> None:
    """As an unprivileged user: a directory that cannot be listed, entries that cannot be
    examined. The walk runs in a child, which compares and reports."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            in_c, in_python = _both(_listing, tree)
            errors = in_c[2][os.fsencode(tree)]
            report = f"{in_c == in_python} {len(errors)} {sorted({e[2] for e in errors})}"
            os.write(write, report.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        report = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == "True 2 [13]", report  # noread itself, nosearch/inside: EACCES


@needs_c
def test_c_and_python_walks_agree_on_the_real_system_directories() -> None:
    out = os.stat("/tmp")
    in_c, in_python = _both(systemwalk._walk, b"/", (out.st_dev, out.st_ino))
    assert in_c == in_python
    assert sum(len(found) for found in in_c[1].values()) > 100


@needs_c
def test_where_statx_is_refused_the_python_walk_lists(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list_exec's None (ENOSYS, nothing listed) anywhere: the walk is the Python one."""
    expected = _plain(_listing(tree))
    calls: list[int] = []

    class Refusing:
        @staticmethod
        def list_exec(fd: int) -> None:
            calls.append(fd)
            return None

    monkeypatch.setattr(systemwalk, "_bodylist", Refusing)
    assert _plain(_listing(tree)) == expected
    assert calls
