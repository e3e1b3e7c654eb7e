"""A host's SQLite database read into memory together with its write-ahead log, so that
nothing is written beside it on the host and the newest changes are not missed.

Opening the file in place would make SQLite create or update its ``-shm`` (and, on
recovery, rewrite the database); ``immutable=1`` avoids that but ignores the ``-wal``,
where a WAL-mode database such as Podman's ``db.sql`` keeps every change since the last
checkpoint. So the file is read (``O_NOFOLLOW``, a regular file, bounded), the WAL's
committed frames are applied to the image in memory as SQLite's recovery would (file
format, "WAL file format": a 32-byte header, then frames of a 24-byte header and one page;
a frame counts when its salts match the header's and its cumulative checksum holds, and
changes count up to the last commit frame), the header is marked as a rollback-journal
database, and the image is handed to ``sqlite3.Connection.deserialize``."""

from __future__ import annotations

import sqlite3
import struct

from .readfile import read_whole

MAX_BYTES = 256 * 1024 * 1024  # of the database, and of its WAL
WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums little-endian, big-endian


class ImageError(Exception):
    """The file is not a database this reader can use; the message says why."""


def _checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes), continuing (s0, s1)."""
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def apply_wal(image: bytearray, wal: bytes) -> int:
    """Apply the committed frames of ``wal`` to ``image``; returns how many were."""
    if len(wal) < 32:
        return 0
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", wal[:32])
    if magic not in WAL_MAGIC or page_size < 512 or page_size & (page_size - 1):
        return 0
    big = magic & 1 == 1
    s0, s1 = _checksum(wal[:24], 0, 0, big)
    if (s0, s1) != (c0, c1):
        return 0
    pending: dict[int, bytes] = {}
    committed: dict[int, bytes] = {}
    size_after = 0
    frame = 24 + page_size
    for at in range(32, len(wal) - frame + 1, frame):
        page_no, db_pages, f1, f2, k0, k1 = struct.unpack(">6I", wal[at : at + 24])
        if (f1, f2) != (salt1, salt2):
            break  # a frame of an earlier generation of the WAL: the log ends here
        s0, s1 = _checksum(wal[at : at + 8], s0, s1, big)
        s0, s1 = _checksum(wal[at + 24 : at + frame], s0, s1, big)
        if (s0, s1) != (k0, k1):
            break  # torn or never finished
        pending[page_no] = wal[at + 24 : at + frame]
        if db_pages:  # a commit frame: everything up to here is in the database
            committed.update(pending)
            pending.clear()
            size_after = db_pages
    if not committed:
        return 0
    end = size_after * page_size
    if len(image) < end:
        image.extend(bytes(end - len(image)))
    del image[end:]
    for page_no, data in committed.items():
        start = (page_no - 1) * page_size
        if start + page_size <= end:
            image[start : start + page_size] = data
    return len(committed)


def open_image(path: bytes) -> tuple[sqlite3.Connection, int]:
    """A read-only in-memory connection to the database at ``path`` with its ``-wal``
    applied, and how many WAL pages were; ``ImageError`` when it is not one."""
    try:
        image = bytearray(read_whole(path, MAX_BYTES))
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror}") from e
    if not image.startswith(b"SQLite format 3\0"):
        raise ImageError("not an SQLite 3 database")
    try:
        wal = read_whole(path + b"-wal", MAX_BYTES)
    except OSError:
        wal = b""
    applied = apply_wal(image, wal)
    image[18:20] = b"\x01\x01"  # rollback journal: an in-memory image has no WAL
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(bytes(image))
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as e:
        conn.close()
        raise ImageError(f"not a readable SQLite database: {e}") from e
    return conn, applied
