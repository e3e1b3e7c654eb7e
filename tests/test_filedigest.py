"""The digest engine the integrity collectors share: on real files of every size around
its buffer, one read gives the same MD5 and SHA-256 as hashlib over the whole file, in
the order asked, across more files than are ever in flight; what cannot be read (gone, a
symlink, a FIFO, a directory, another inode than the walk saw) is said, never hashed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from collectors.filedigest import BUFFER, CHUNK, WORKERS, Read, Want, digest_files


def _write(path: Path, size: int) -> bytes:
    data = (os.urandom(4096) * (size // 4096 + 1))[:size]
    path.write_bytes(data)
    return data


def test_one_read_gives_hashlibs_digests_for_every_size(tmp_path: Path) -> None:
    sizes = [0, 1, 2047, 2048, BUFFER - 1, BUFFER, BUFFER + 1, 3 * BUFFER + 7]
    expected = {}
    for size in sizes:
        data = _write(tmp_path / f"f{size}", size)
        expected[size] = (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    items = [(size, Want(os.fsencode(tmp_path / f"f{size}"), ("md5", "sha256"))) for size in sizes]
    got = list(digest_files(items))
    assert [size for size, _ in got] == sizes
    for size, read in got:
        assert read.state == "ok" and read.stat is not None and read.stat.st_size == size
        assert (read.digests["md5"], read.digests["sha256"]) == expected[size]


def test_order_holds_across_many_chunks_with_results_passed_through(tmp_path: Path) -> None:
    count = CHUNK * 4 * WORKERS * 2 + 5  # more files than are ever in flight
    known = Read("ok", 0o100644, None, {"sha256": "handed on"})
    items: list[tuple[int, Want | Read]] = []
    for i in range(count):
        (tmp_path / str(i)).write_bytes(str(i).encode())
        want = Want(os.fsencode(tmp_path / str(i)), ("sha256",))
        items.append((i, known if i % 7 == 0 else want))
    got = list(digest_files(items))
    assert [i for i, _ in got] == list(range(count))
    for i, read in got:
        expected = "handed on" if i % 7 == 0 else hashlib.sha256(str(i).encode()).hexdigest()
        assert read.digests["sha256"] == expected


def test_what_is_not_a_readable_file_is_said(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"content")
    os.symlink(tmp_path / "real", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")  # opened non-blocking: never waits for a writer
    (tmp_path / "dir").mkdir()
    other = os.stat(tmp_path / "dir")
    names = ["gone", "link", "fifo", "dir", "real"]
    items = [(n, Want(os.fsencode(tmp_path / n), ("md5",))) for n in names]
    items.append(("swapped", Want(os.fsencode(tmp_path / "real"), ("md5",), (other.st_dev, 1))))
    states = {tag: read.state for tag, read in digest_files(items)}
    assert states == {
        "gone": "missing", "link": "not-regular", "fifo": "not-regular", "dir": "not-regular",
        "real": "ok", "swapped": "changed",
    }  # fmt: skip


def test_extra_digests_by_mode_and_an_xattr_through_the_same_descriptor(tmp_path: Path) -> None:
    tool, doc = tmp_path / "tool", tmp_path / "doc"
    tool.write_bytes(b"#!/bin/sh\n")
    tool.chmod(0o755)
    doc.write_bytes(b"text")
    os.setxattr(tool, "user.preserve-test", b"\x01\x02")

    def extra(want: Want, st: os.stat_result) -> tuple[str, ...]:
        return ("sha256",) if st.st_mode & 0o111 else ()

    wants = [Want(os.fsencode(p), ("md5",), None, "user.preserve-test") for p in (tool, doc)]
    (_, t), (_, d) = digest_files([(1, wants[0]), (2, wants[1])], extra)
    assert t.digests == {
        "md5": hashlib.md5(b"#!/bin/sh\n").hexdigest(),
        "sha256": hashlib.sha256(b"#!/bin/sh\n").hexdigest(),
    }
    assert d.digests == {"md5": hashlib.md5(b"text").hexdigest()}
    assert (t.xattr, d.xattr) == (b"\x01\x02", None)
