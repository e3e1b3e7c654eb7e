"""What the evidence directory holds against what the journal vouches for: every artifact
there with its size and SHA-256, nothing missing, nothing added.

Both sides go into the on-disk index (``verify_index``) as they stream past: the
journal's artifact records (``ExpectedFiles``) and the walk of the directory
(``load_present``); the comparisons are then queries, and only problems are kept. The
big files are hashed by a child while the journal is read (``verify_early``), or on
threads; the small ones in this thread (``hash_expected``); each opened relative to the
evidence directory's descriptor without following any symlink, and checked to be the
very file the walk saw."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import layout, treewalk
from .continuation import CONTINUATION
from .digest import sha256_fd
from .sums import iter_sums
from .verify_early import EarlyHashes
from .verify_image import ImagePieces, PieceCheck, damage_text
from .verify_index import EvidenceIndex, key, s64, text

if TYPE_CHECKING:
    from .verify import VerificationResult

HASHED_RECORD_TYPES = ("artifact",)
# The directory's own files: checked by ``verify_manifest``, never artifacts.
OWN_FILES = (
    layout.JOURNAL,
    layout.MANIFEST,
    layout.MANIFEST_SIG,
    layout.SIGNER_PUB,
    layout.SUMS,
    CONTINUATION,  # the journal's continuation after a lost link (its own checks)
)
_BATCH = 64  # small files checked between two looks at the index
_FLUSH = 10_000  # rows sent to the index at a time
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


@dataclass
class FileVerdict:
    path: str
    status: str  # ok | changed | missing | unexpected | incomplete | unsealed
    detail: str = ""


def hard_link(nlink: int) -> str:
    """Why a stored file with more than one name is a problem."""
    return (
        f"a hard link: {nlink} names share this file, so it can be changed through another "
        "one, even from outside the evidence directory"
    )


class ExpectedFiles:
    """The journal's artifact records, each checked for a safe path and a usable size and
    SHA-256, into the index. Problems go to ``problems`` in journal order."""

    def __init__(self, index: EvidenceIndex) -> None:
        self.index = index
        self.problems: list[str] = []
        self._rows: list[tuple[Any, ...]] = []

    def add(self, record: dict[str, Any]) -> None:
        path, seq = record.get("path"), record.get("seq")
        if (
            not isinstance(path, str)
            or not layout.is_safe_relpath(path)
            or not (path.startswith(layout.ARTIFACTS + "/") or path == layout.LOG)
        ):
            self.problems.append(
                f"tampering: record seq {seq} names a path outside the "
                f"evidence directory ({path!r}); it was not opened"
            )
            return
        size, digest = record.get("size"), record.get("sha256")
        if type(size) is not int or size < 0 or not isinstance(digest, str):
            self.problems.append(f"tampering: record seq {seq} has no valid size and SHA-256")
            return
        self._rows.append((key(path), seq, size, digest))
        if len(self._rows) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        for raw, seq, *_ in self.index.add_unique("expected", self._rows):
            self.problems.append(
                f"record seq {seq} repeats the path {text(raw)!r} (tampering: a stored file "
                "has one record; which of them holds its true hash cannot be told)"
            )
        self._rows.clear()
        self.index.commit()


def _walk(root: Path, errors: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Every non-directory entry under ``root``, relative, without following symlinks,
    and every empty directory (as ``"rel/"``): the one walker, at any depth.

    What cannot be listed or examined goes into ``errors``: it must fail verification,
    not be silently left out."""
    top = os.fsencode(os.path.realpath(root))  # the evidence directory the user named

    def failed(path: bytes, e: OSError) -> None:
        where = os.fsdecode(os.path.relpath(path, top))
        errors.append(
            f"cannot examine {where[:200]!r}{'...' if len(where) > 200 else ''}: {e.strerror}; "
            "whatever is there is unaccounted for"
        )

    for entry in treewalk.walk(top, failed, lstat=True, empty_dirs=True):
        assert entry.stat is not None  # lstat=True
        rel = os.fsdecode(entry.rel)
        yield (rel + "/" if entry.empty_dir else rel), entry.stat


def load_present(
    root: Path, index: EvidenceIndex, early: EarlyHashes | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Walk the directory into the index; returns the stat of each of its own files
    (``OWN_FILES``) that is there, and what could not be examined. Each big regular file
    is offered to ``early``, to be hashed while the journal is read."""
    errors: list[str] = []
    own: dict[str, os.stat_result] = {}

    def artifacts() -> Iterator[tuple[str, os.stat_result]]:
        for rel, st in _walk(root, errors):
            if rel in OWN_FILES:
                own[rel] = st
                continue
            if early is not None and early.wants(st):
                early.offer(key(rel), st)
            yield rel, st

    index.add_present(artifacts(), layout.PARTIAL_SUFFIX)
    index.commit()
    return own, errors


def compare_listing(root: Path, index: EvidenceIndex, result: VerificationResult) -> None:
    """``SHA256SUMS`` (already known to be the journal's) must list exactly the journal's
    artifacts, each with its digest; read a line at a time."""
    rows: list[tuple[Any, ...]] = []

    def flush() -> None:
        repeats = index.add_unique("listed", rows)
        rows.clear()
        if repeats:
            raw, number, _ = repeats[0]
            raise ValueError(f"line {number} repeats {text(raw)!r}")

    try:
        fd = os.open(root / layout.SUMS, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as stream:
            for number, name, digest in iter_sums(stream):
                rows.append((key(name), number, digest))
                if len(rows) >= _FLUSH:
                    flush()
            flush()
    except ValueError as e:  # UnicodeDecodeError included
        result.problems.append(
            f"SHA256SUMS is malformed: {e} (its hash is the journal's, so the journal's "
            "'sums' record vouches for a malformed listing: damage at collection)"
        )
        return
    except OSError as e:
        result.problems.append(
            f"SHA256SUMS cannot be read: {e.strerror}; check the drive and permissions, "
            "then verify again"
        )
        return
    index.commit()
    extra, lacking, different = index.sums_disagree()
    if extra or lacking or different:
        result.problems.append(
            f"SHA256SUMS disagrees with the journal (extra {extra}, "
            f"lacking {lacking}, different {different}): its 'sums' record vouches for it, "
            "so the collection wrote them apart; the journal is the authority"
        )


class _Replaced(Exception):
    """The stored file is no longer the one the walk saw."""


def _open_walked(root_fd: int, dirs: _DirCache, raw: bytes, dev: int, ino: int) -> int:
    """Open the stored file ``raw`` for hashing: no component is followed if it is a
    symlink (a directory swapped for one since the walk would lead outside), at any
    depth, and the file opened must still be the very one the walk saw (``_Replaced``
    otherwise; OSError when it cannot be opened)."""
    parent, _, name = raw.rpartition(b"/")
    try:
        directory = dirs.open(root_fd, parent)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _Replaced from e
        raise
    fd = os.open(name, _OPEN_FLAGS, dir_fd=directory)
    try:
        opened = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if (s64(opened.st_dev), s64(opened.st_ino)) != (dev, ino):
        os.close(fd)
        raise _Replaced
    return fd


def walked_hasher(root_fd: int) -> Callable[[bytes, int, int], str | None]:
    """What ``EarlyHashes``' child hashes with: the SHA-256 of a stored file opened as
    ``_check`` opens it, or None when it cannot be or is not the file the walk saw."""
    dirs, buf = _DirCache(), bytearray(1024 * 1024)

    def digest(raw: bytes, dev: int, ino: int) -> str | None:
        try:
            fd = _open_walked(root_fd, dirs, raw, dev, ino)
        except (_Replaced, OSError, ValueError):
            return None
        try:
            return sha256_fd(fd, buf)[0]
        except OSError:
            return None
        finally:
            os.close(fd)

    return digest


def _check(
    root_fd: int,
    row: tuple[Any, ...],
    buf: bytearray,
    dirs: _DirCache,
    pieces: ImagePieces,
    early: EarlyHashes | None = None,
) -> FileVerdict:
    raw, seq, size, digest, mode, on_disk, dev, ino, nlink = row
    path = text(raw)
    plan = pieces.by_part.get(path)  # a raw image's file: hashed by piece as well
    if not stat.S_ISREG(mode):
        return FileVerdict(path, "changed", "no longer a regular file")
    if nlink > 1:
        return FileVerdict(path, "changed", hard_link(nlink))
    if on_disk != size:
        return FileVerdict(path, "changed", f"size {on_disk}, journal says {size}")
    hashed = early.digest(raw, dev, ino) if early is not None and not plan else None
    if hashed is not None:  # the very file the walk saw, hashed by the child
        return _compared(path, hashed, digest, None)
    try:
        fd = _open_walked(root_fd, dirs, raw, dev, ino)
    except _Replaced:
        return FileVerdict(path, "changed", "replaced while it was being verified")
    except OSError as e:
        return FileVerdict(path, "changed", f"cannot read: {e.strerror}")
    try:
        check = pieces.hash_file(fd, buf, plan) if plan else None
        actual = check.sha256 if check else sha256_fd(fd, buf)[0]
    except OSError as e:
        return FileVerdict(path, "changed", f"cannot read: {e.strerror}")
    finally:
        os.close(fd)
    return _compared(path, actual, digest, check)


def _compared(path: str, actual: str, digest: str, check: PieceCheck | None) -> FileVerdict:
    damage = f"; {damage_text(check)}" if check and check.damaged else ""
    if actual != digest:
        return FileVerdict(path, "changed", f"SHA-256 differs from the journal{damage}")
    if damage:  # the file is as journaled, but not its pieces: the journal disagrees
        return FileVerdict(path, "changed", f"the image pieces differ from the journal{damage}")
    return FileVerdict(path, "ok")


def _sealed(verdict: FileVerdict, seq: int, sealed: int) -> FileVerdict:
    """A file that matches a record no seal covers is not vouched for: a killed run's
    last copies, or records anyone can append after the last seal (the chain's hashes
    need no key). Said as what it is, never ``ok``."""
    if verdict.status != "ok" or seq <= sealed:
        return verdict
    last = f"the last valid seal (seq {sealed})" if sealed >= 0 else "every valid seal (none)"
    return FileVerdict(
        verdict.path,
        "unsealed",
        f"matches its record (seq {seq}), but that record comes after {last}: no signature "
        "vouches for it; use it only with other corroboration",
    )


class _DirCache:
    """The directory of the last file a batch opened: files come in path order, so a
    directory of a thousand files is opened once, not a thousand times."""

    def __init__(self) -> None:
        self.parent: bytes | None = None
        self.fd: int | None = None

    def open(self, root_fd: int, parent: bytes) -> int:
        if not parent:
            return root_fd
        if parent != self.parent or self.fd is None:
            self.close()
            self.fd = treewalk.open_beneath(root_fd, parent)
            self.parent = parent
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.parent = self.fd = None


def hash_expected(
    root: Path,
    index: EvidenceIndex,
    result: VerificationResult,
    workers: int,
    pieces: ImagePieces | None = None,
    early: EarlyHashes | None = None,
) -> None:
    """Every journaled file that is there: type, links, size, identity and SHA-256.
    A big file ``early`` hashed already (verify_early) is only compared.

    The big files go to ``workers - 1`` threads (at least one), whose hashing runs
    outside the interpreter lock; the small ones are checked here, in this thread, at
    the same time. Small files cost interpreter time, not hashing: spread over threads,
    each open and read hands the lock to another thread and back, which made 20,000
    small files take 2.4 times as long as one thread does (bench/RESULTS.md)."""
    pieces = pieces or ImagePieces()
    sealed = -1 if result.sealed_through is None else result.sealed_through
    local = threading.local()

    def check_batch(rows: list[tuple[Any, ...]]) -> list[FileVerdict]:
        if not hasattr(local, "buf"):
            local.buf = bytearray(1024 * 1024)
        dirs = _DirCache()
        try:
            verdicts = [_check(root_fd, row, local.buf, dirs, pieces, early) for row in rows]
        finally:
            dirs.close()
        return [_sealed(v, row[1], sealed) for v, row in zip(verdicts, rows, strict=True)]

    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            big = [pool.submit(check_batch, [row]) for row in index.to_hash(big=True)]
            batch: list[tuple[Any, ...]] = []
            for row in index.to_hash(big=False):  # in path order, as they come
                batch.append(row)
                if len(batch) >= _BATCH:
                    result.add_files(check_batch(batch))
                    batch = []
            result.add_files(check_batch(batch))
            for future in big:  # then the big ones, biggest first
                result.add_files(future.result())
    finally:
        os.close(root_fd)
