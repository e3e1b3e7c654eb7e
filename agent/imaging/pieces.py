"""A SHA-256 per fixed piece of the image, cut where the pieces and the stored parts say.

Pieces are what makes a damaged copy localisable (``verify`` names the piece whose bytes
changed) and what a killed run keeps: each piece is journaled as it completes, and the
periodic seals sign them, so the image's prefix up to the last sealed piece is proven
even though the image never got its closing record. A piece never spans two stored parts
(``image.raw.000``, ``.001``): each can then be checked on its own."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

DEFAULT_PIECE = 64 * 1024 * 1024


class Piece(NamedTuple):
    number: int
    offset: int  # in the image
    length: int
    sha256: str


class PieceHasher:
    """Feed the image's bytes in order; completed pieces are returned as they end."""

    def __init__(self, piece_size: int, part_size: int | None = None) -> None:
        if piece_size <= 0:
            raise ValueError("piece size must be positive")
        self.piece_size = piece_size
        self.part_size = part_size
        self.offset = 0  # bytes fed so far
        self.number = 0
        self._start = 0
        self._hash = hashlib.sha256()

    def _end_of_piece(self) -> int:
        """Where the current piece ends: its size, or the end of its part if sooner
        (pieces are counted afresh in each part)."""
        if not self.part_size:
            return self._start + self.piece_size
        part_start = self._start - self._start % self.part_size
        in_part = self._start - part_start
        return part_start + min((in_part // self.piece_size + 1) * self.piece_size, self.part_size)

    def feed(self, data: memoryview) -> list[Piece]:
        done: list[Piece] = []
        pos, end = 0, self._end_of_piece()
        while pos < len(data):
            take = min(len(data) - pos, end - self.offset)
            self._hash.update(data[pos : pos + take])
            pos += take
            self.offset += take
            if self.offset == end:
                done.append(self._close())
                end = self._end_of_piece()
        return done

    def finish(self) -> Piece | None:
        """The last, shorter piece (the image's end, or where the run stopped)."""
        return self._close() if self.offset > self._start else None

    def _close(self) -> Piece:
        piece = Piece(self.number, self._start, self.offset - self._start, self._hash.hexdigest())
        self.number += 1
        self._start = self.offset
        self._hash = hashlib.sha256()
        return piece
