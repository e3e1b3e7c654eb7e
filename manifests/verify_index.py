"""``verify``'s scratch index: what the journal vouches for, what the directory holds and
what ``SHA256SUMS`` lists, one row a file, in SQLite on disk.

A million files as Python dicts cost 400 MB; here they cost the page cache SQLite is
given (``CACHE_KIB``) and about 300 bytes of disk a file. The database lives in a new
temporary directory outside the evidence directory (``verify`` never writes inside it),
removed when the check ends, whatever happens. Paths are stored as their bytes, so names
that are not valid UTF-8 match exactly as they did as ``str``."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import UsageError

CACHE_KIB = 16 * 1024
BIG = 1024 * 1024  # files hashed first, biggest first, so they spread over all workers
_IFMT = 0o170000  # the file-type bits of st_mode

_SCHEMA = (
    "CREATE TABLE expected (path BLOB PRIMARY KEY, seq INTEGER, size INTEGER, sha TEXT)"
    " WITHOUT ROWID",
    # base: the name a partial file ('...%part') stands for, else NULL
    "CREATE TABLE present (path BLOB PRIMARY KEY, base BLOB, mode INTEGER, size INTEGER,"
    " dev INTEGER, ino INTEGER, nlink INTEGER) WITHOUT ROWID",
    "CREATE INDEX present_base ON present (base) WHERE base IS NOT NULL",
    "CREATE TABLE listed (path BLOB PRIMARY KEY, line INTEGER, sha TEXT) WITHOUT ROWID",
)
_COLUMNS = {"expected": ("path", "seq", "size", "sha"), "listed": ("path", "line", "sha")}


def key(path: str) -> bytes:
    """A path as the bytes it names (``os.fsencode``'s rule, lone surrogates kept)."""
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogatepass")


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def s64(value: int) -> int:
    """An unsigned 64-bit number (an inode) as the signed integer SQLite stores."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _make_scratch(root: Path) -> str:
    """A new directory in the temporary directory (``TMPDIR`` first, then ``/tmp``,
    ``/var/tmp``), never inside the evidence directory. Not ``tempfile.gettempdir()``: it
    probes each candidate by writing a file there, and ``TMPDIR`` may point into the
    evidence."""
    inside = os.path.realpath(root) + os.sep
    named = [os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")]
    for candidate in [*filter(None, named), "/tmp", "/var/tmp"]:
        real = os.path.realpath(candidate)
        if (real + os.sep).startswith(inside) or not os.path.isdir(real):
            continue
        try:
            return tempfile.mkdtemp(prefix="preserve-verify-", dir=real)
        except OSError:
            continue  # not writable: the next one
    raise UsageError(
        f"no writable temporary directory outside {root} for verify's scratch index",
        hint="set TMPDIR to a writable directory outside the evidence directory",
    )


class EvidenceIndex:
    """One verification's tables; a context manager that removes them afterwards."""

    def __init__(self, root: Path) -> None:
        self._dir = _make_scratch(root)
        try:
            self.db = sqlite3.connect(os.path.join(self._dir, "index.sqlite"))
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE"):
                self.db.execute(f"PRAGMA {pragma}")
            # SQLite's own sort files too, not in TMPDIR (which may be inside the evidence)
            quoted = self._dir.replace("'", "''")
            self.db.execute(f"PRAGMA temp_store_directory = '{quoted}'")
            self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            for statement in _SCHEMA:
                self.db.execute(statement)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise

    def __enter__(self) -> EvidenceIndex:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.db.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- filling -------------------------------------------------------------------

    def add_unique(self, table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Insert rows (path, n, ...) into ``expected`` (n: the record's seq) or ``listed``
        (n: the line number); returns the rows whose path came earlier. Each of those then
        replaces the earlier row: the last record of a path is the one checked."""
        if not rows:
            return []
        before = self.db.total_changes
        marks = ",".join("?" * len(rows[0]))
        self.db.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", rows)
        if self.db.total_changes - before == len(rows):
            return []
        columns = _COLUMNS[table]
        update = ", ".join(f"{c} = ?" for c in columns[1:])
        repeats = []
        for row in rows:  # rare: find which, in order (one may repeat another in the batch)
            query = f"SELECT {columns[1]} FROM {table} WHERE path = ?"
            (n,) = self.db.execute(query, (row[0],)).fetchone()
            if n != row[1]:
                repeats.append(row)
                self.db.execute(f"UPDATE {table} SET {update} WHERE path = ?", (*row[1:], row[0]))
        return repeats

    def add_present(self, entries: Iterable[tuple[str, os.stat_result]], suffix: str) -> None:
        """What the walk found; ``suffix`` marks partial files."""

        def rows() -> Iterator[tuple[Any, ...]]:
            for rel, st in entries:
                raw = key(rel)
                base = raw[: -len(suffix)] if rel.endswith(suffix) else None
                yield (
                    raw,
                    base,
                    st.st_mode,
                    st.st_size,
                    s64(st.st_dev),
                    s64(st.st_ino),
                    (st.st_nlink),
                )

        self.db.executemany("INSERT OR IGNORE INTO present VALUES (?,?,?,?,?,?,?)", rows())

    def commit(self) -> None:
        self.db.commit()

    # -- questions -----------------------------------------------------------------

    def to_hash(self, big: bool) -> Iterator[tuple[Any, ...]]:
        """(path, seq, size, sha, mode, size on disk, dev, ino, nlink) of every expected
        file that is there: the big ones biggest first (so they spread over the workers),
        or the small ones in path order (files of one directory together, so each
        directory is opened once)."""
        columns = (
            "SELECT e.path, e.seq, e.size, e.sha, p.mode, p.size, p.dev, p.ino, p.nlink"
            " FROM expected e JOIN present p ON p.path = e.path"
        )
        if big:
            yield from self.db.execute(f"{columns} WHERE e.size >= ? ORDER BY e.size DESC", (BIG,))
        else:
            yield from self.db.execute(f"{columns} WHERE e.size < ? ORDER BY e.path", (BIG,))

    def missing(self, partials_stand_in: bool = True) -> Iterator[tuple[bytes, int, bool]]:
        """(path, seq, whether a partial file of that name is there) of expected files not
        there. With ``partials_stand_in`` (a killed run: journaled, not yet renamed) those
        with a partial file are left out: reported once, as incomplete."""
        partial = (
            "EXISTS (SELECT 1 FROM present q WHERE q.base = e.path"
            f" AND (q.mode & {_IFMT}) = {stat.S_IFREG})"
        )
        where = f" AND NOT {partial}" if partials_stand_in else ""
        return self.db.execute(
            f"SELECT e.path, e.seq, {partial} FROM expected e"
            " WHERE NOT EXISTS (SELECT 1 FROM present p WHERE p.path = e.path)"
            f"{where} ORDER BY e.path"
        )

    def unaccounted(self) -> Iterator[tuple[bytes, int, int | None]]:
        """(path, mode, seq of the record a partial file stands for) of what is there and
        not in the journal, in path order."""
        return self.db.execute(
            "SELECT p.path, p.mode, b.seq FROM present p"
            " LEFT JOIN expected b ON b.path = p.base"
            " WHERE NOT EXISTS (SELECT 1 FROM expected e WHERE e.path = p.path)"
            " ORDER BY p.path"
        )

    def sums_disagree(self, limit: int = 3) -> tuple[list[str], list[str], list[str]]:
        """Paths listed and not journaled, journaled and not listed, and listed with
        another digest: the first ``limit`` of each, sorted."""
        queries = (
            "SELECT path FROM listed l WHERE NOT EXISTS"
            " (SELECT 1 FROM expected e WHERE e.path = l.path)",
            "SELECT path FROM expected e WHERE NOT EXISTS"
            " (SELECT 1 FROM listed l WHERE l.path = e.path)",
            "SELECT l.path FROM listed l JOIN expected e ON e.path = l.path WHERE e.sha != l.sha",
        )
        found = [
            [text(row[0]) for row in self.db.execute(f"{q} ORDER BY 1 LIMIT ?", (limit,))]
            for q in queries
        ]
        return found[0], found[1], found[2]
