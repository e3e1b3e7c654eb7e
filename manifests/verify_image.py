"""Disk images, piece by piece: the journal's ``image-piece`` records against the stored
files (raw images only: their bytes are the image's).

Each stored file of an image is hashed once, whole and by piece in the same read, so a
damaged byte is named by its piece (its offset range in the image) and not just "the
file changed". A run killed while imaging leaves the file being written under its
partial name: its journaled, sealed pieces are checked all the same, so ``verify``
proves the prefix that was imaged before the kill."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from . import layout, treewalk

if TYPE_CHECKING:
    from .verify import VerificationResult
    from .verify_files import FileVerdict

PIECE_TYPE = "image-piece"
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


class JournaledPiece(NamedTuple):
    number: int
    offset: int  # in the image
    part_offset: int  # in the stored file
    length: int
    sha256: str
    seq: int


@dataclass
class PieceCheck:
    """What hashing one stored file by piece found."""

    sha256: str
    checked: int = 0
    damaged: list[JournaledPiece] = field(default_factory=list)
    covered: int = 0  # bytes of the file the pieces checked cover


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


class ImagePieces:
    """The ``image-piece`` records of the journal, by stored file, in order. Records
    that do not follow on from the previous piece of their file are a problem."""

    def __init__(self) -> None:
        self.by_part: dict[str, list[JournaledPiece]] = {}
        self.problems: list[str] = []
        self.checked = 0
        self.ok = 0
        self._lock = threading.Lock()  # files are hashed on all cores

    def feed(self, record: dict[str, Any]) -> None:
        if record.get("type") != PIECE_TYPE or "part" not in record:
            return
        part, sha = record.get("part"), record.get("sha256")
        numbers = [_int(record.get(k)) for k in ("index", "offset", "part_offset", "length")]
        seq = _int(record.get("seq"))
        if not isinstance(part, str) or not isinstance(sha, str) or None in numbers:
            self.problems.append(f"tampering: image piece at seq {seq} is malformed")
            return
        index, offset, within, length = (n or 0 for n in numbers)
        pieces = self.by_part.setdefault(part, [])
        expected = pieces[-1].part_offset + pieces[-1].length if pieces else 0
        if within != expected:
            self.problems.append(
                f"tampering: image piece at seq {seq} of {part} starts at {within}, not {expected}"
            )
            return
        pieces.append(JournaledPiece(index, offset, within, length, sha, seq or 0))

    def sealed(self, part: str, sealed_through: int | None) -> list[JournaledPiece]:
        """The pieces of ``part`` a valid seal covers."""
        limit = -1 if sealed_through is None else sealed_through
        return [p for p in self.by_part.get(part, []) if p.seq <= limit]

    def hash_file(self, fd: int, buf: bytearray, pieces: list[JournaledPiece]) -> PieceCheck:
        """SHA-256 of everything in ``fd``, checking each of ``pieces`` on the way."""
        whole, view = hashlib.sha256(), memoryview(buf)
        check = PieceCheck("")
        todo = iter(pieces)
        current, piece_hash, pos = next(todo, None), hashlib.sha256(), 0
        while n := os.readv(fd, [view]):
            whole.update(view[:n])
            i = 0
            while i < n and current is not None:
                take = min(n - i, current.part_offset + current.length - pos)
                piece_hash.update(view[i : i + take])
                i, pos = i + take, pos + take
                if pos == current.part_offset + current.length:
                    self._judge(check, current, piece_hash.hexdigest())
                    current, piece_hash = next(todo, None), hashlib.sha256()
            pos += n - i
        if current is not None:  # the file ends inside a journaled piece: it is short
            self._judge(check, current, "")
            check.damaged.extend(todo)
        check.sha256 = whole.hexdigest()
        return check

    def _judge(self, check: PieceCheck, piece: JournaledPiece, actual: str) -> None:
        check.checked += 1
        good = actual == piece.sha256
        with self._lock:
            self.checked += 1
            self.ok += good
        if good:
            check.covered += piece.length
        else:
            check.damaged.append(piece)


def damage_text(check: PieceCheck) -> str:
    """The damaged pieces in words: where in the image the changed bytes are."""
    shown = [
        f"piece {p.number} (image bytes {p.offset}-{p.offset + p.length - 1})"
        for p in check.damaged[:5]
    ]
    more = f" and {len(check.damaged) - 5} more" if len(check.damaged) > 5 else ""
    good = check.checked - len(check.damaged)
    return f"damaged: {', '.join(shown)}{more}; the other {good} piece(s) match"


def check_unfinished(
    root: str | os.PathLike[str],
    pieces: ImagePieces,
    result: VerificationResult,
    buf: bytearray,
) -> None:
    """An image file a killed run was writing (``incomplete``): prove its sealed pieces."""
    for verdict in result.file_problems:
        if verdict.status != "incomplete":
            continue
        part = verdict.path.removesuffix(layout.PARTIAL_SUFFIX)
        sealed = pieces.sealed(part, result.sealed_through)
        if sealed:
            _prove_prefix(root, verdict, sealed, pieces, buf)


def _prove_prefix(
    root: str | os.PathLike[str],
    verdict: FileVerdict,
    sealed: list[JournaledPiece],
    pieces: ImagePieces,
    buf: bytearray,
) -> None:
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = treewalk.open_beneath(root_fd, verdict.path, _OPEN_FLAGS)
        finally:
            os.close(root_fd)
    except OSError as e:
        verdict.detail += f"; its pieces cannot be read: {e.strerror}"
        return
    try:
        check = pieces.hash_file(fd, buf, sealed)
    except OSError as e:
        verdict.detail += f"; its pieces cannot be read: {e.strerror}"
        return
    finally:
        os.close(fd)
    if check.damaged:
        verdict.detail += f"; of its {check.checked} sealed image pieces, {damage_text(check)}"
    else:
        verdict.detail += (
            f"; its first {check.checked} image piece(s), {check.covered} bytes, match the "
            "sealed journal: that prefix of the image is proven"
        )
