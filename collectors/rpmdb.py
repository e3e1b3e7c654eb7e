"""Reading the RPM package database directly (Fedora, RHEL 9, SUSE, ...): no ``rpm``,
nothing of the host's is run.

Since RPM 4.16 the database is SQLite (``/var/lib/rpm/rpmdb.sqlite``, or
``/usr/lib/sysimage/rpm/``): table ``Packages`` holds one header blob per installed
package. A header blob is ``il`` and ``dl`` (big-endian int32), ``il`` index entries of
16 bytes (tag, type, offset, count) and a data store of ``dl`` bytes; the tags read here
are the file list (``BASENAMES``/``DIRNAMES``/``DIRINDEXES``), each file's digest, mode,
flags and state, and the digest algorithm of the package.

The file is opened without following a symlink, checked to be a regular file, and handed
to SQLite as ``/proc/self/fd/N`` with ``immutable=1``: SQLite then takes no lock and
writes no ``-shm``/``-journal`` beside it, so the host's disk is not touched. Changes
still in a ``-wal`` file (RPM checkpoints when it closes the database) are not read; a
non-empty one is noted. The older Berkeley DB ``Packages`` file (RHEL/CentOS 7 and 8) is
read page by page (collectors/rpmbdb.py); an ndb database (SUSE) is not read yet, and the
collector says so instead of guessing."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import struct
from collections.abc import Iterator
from typing import Any

from . import rpmbdb
from .pkgdb import Database

SQLITE_PATHS = (b"var/lib/rpm/rpmdb.sqlite", b"usr/lib/sysimage/rpm/rpmdb.sqlite")
BDB_PATHS = (b"var/lib/rpm/Packages", b"usr/lib/sysimage/rpm/Packages")
NDB_PATHS = (b"var/lib/rpm/Packages.db", b"usr/lib/sysimage/rpm/Packages.db")
MAX_INDEX = 65536  # entries in one header; a real one has a few hundred
MAX_STEPS = 10**9  # SQLite virtual machine steps; thousands of packages take a million

# rpmtag.h
NAME, VERSION, RELEASE, ARCH = 1000, 1001, 1002, 1022
FILEMODES, FILESTATES, FILEDIGESTS, FILEFLAGS = 1030, 1029, 1035, 1037
OLDFILENAMES, DIRINDEXES, BASENAMES, DIRNAMES = 1027, 1116, 1117, 1118
FILEDIGESTALGO = 5011
WANTED = {
    NAME, VERSION, RELEASE, ARCH, FILEMODES, FILESTATES, FILEDIGESTS, FILEFLAGS,
    OLDFILENAMES, DIRINDEXES, BASENAMES, DIRNAMES, FILEDIGESTALGO,
}  # fmt: skip
RPMFILE_CONFIG, RPMFILE_GHOST = 1 << 0, 1 << 6
# pgpHashAlgo numbers as FILEDIGESTALGO stores them; absent means MD5
ALGORITHMS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_INTS = {2: ">B", 3: ">H", 4: ">I", 5: ">Q"}  # INT8, INT16, INT32, INT64
_CHAR, _STRING, _BIN, _STRING_ARRAY, _I18NSTRING = 1, 6, 7, 8, 9


class HeaderError(ValueError):
    """A header blob that does not parse: one package is skipped, and said so."""


def parse_header(blob: bytes) -> dict[int, Any]:
    """The wanted tags of one header blob: ints as tuples, strings as bytes, string
    arrays as lists of bytes."""
    if len(blob) < 8:
        raise HeaderError("shorter than its own length fields")
    il, dl = struct.unpack_from(">II", blob, 0)
    store = 8 + 16 * il
    if il > MAX_INDEX or store + dl > len(blob):
        raise HeaderError(f"index of {il} entries and {dl} data bytes overrun the blob")
    data = blob[store : store + dl]
    tags: dict[int, Any] = {}
    for i in range(il):
        tag, kind, offset, count = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if tag in WANTED:
            tags[tag] = _value(data, kind, offset, count)
    return tags


def _value(data: bytes, kind: int, offset: int, count: int) -> Any:
    if offset > len(data):
        raise HeaderError(f"an entry points past the data store ({offset} > {len(data)})")
    if kind in _INTS:
        fmt = _INTS[kind]
        size = struct.calcsize(fmt)
        if offset + size * count > len(data):
            raise HeaderError("an integer array overruns the data store")
        return struct.unpack_from(f">{count}{fmt[1]}", data, offset)
    if kind in (_CHAR, _BIN):
        return data[offset : offset + count]
    if kind == _STRING:
        return _strings(data, offset, 1)[0]
    if kind in (_STRING_ARRAY, _I18NSTRING):
        return _strings(data, offset, count)
    raise HeaderError(f"unknown entry type {kind}")


def _strings(data: bytes, offset: int, count: int) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(count):
        end = data.find(b"\0", offset)
        if end < 0:
            raise HeaderError("a string runs past the data store")
        out.append(data[offset:end])
        offset = end + 1
    return out


def files_of(tags: dict[int, Any]) -> Iterator[tuple[bytes, bytes, int, int, int]]:
    """(path, hex digest, mode, flags, state) of each file of one package."""
    if BASENAMES in tags:
        dirs, index = tags.get(DIRNAMES, []), tags.get(DIRINDEXES, ())
        names = [dirs[i] + base for base, i in zip(tags[BASENAMES], index, strict=True)]
    else:
        names = list(tags.get(OLDFILENAMES, []))
    count = len(names)
    digests = tags.get(FILEDIGESTS) or [b""] * count
    modes = tags.get(FILEMODES) or (0,) * count
    flags = tags.get(FILEFLAGS) or (0,) * count
    states = tags.get(FILESTATES) or bytes(count)
    if not len(digests) == len(modes) == len(flags) == len(states) == count:
        raise HeaderError("the file arrays of the package differ in length")
    yield from zip(names, digests, modes, flags, states, strict=True)


def _package_name(tags: dict[int, Any]) -> str:
    parts = [tags.get(t, b"?") for t in (NAME, VERSION, RELEASE)]
    name = b"-".join(parts) + b"." + tags.get(ARCH, b"noarch")
    return name.decode("utf-8", "replace")


def load(root: bytes = b"/") -> Database | None:
    """The RPM database under ``root``, or None where there is none (not an RPM host)."""
    for paths, read in ((SQLITE_PATHS, _load_sqlite), (BDB_PATHS, _load_bdb)):
        for rel in paths:
            path = os.path.join(root, rel)
            if os.path.lexists(path):
                db = Database(root, manager="rpm")
                read(db, path)
                return db
    for rel in NDB_PATHS:
        if os.path.lexists(os.path.join(root, rel)):
            db = Database(root, manager="rpm")
            db.notes.append(
                f"the RPM database /{rel.decode()} is in ndb format, which is not read "
                "yet: package files were not checked (run 'rpm -Va' from trusted media)"
            )
            return db
    return None


@contextlib.contextmanager
def _opened(db: Database, path: bytes) -> Iterator[int | None]:
    """The database file as a descriptor: never through a symlink, never a FIFO or a
    device (which could block or never end); None, with a note, otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        db.notes.append(f"the RPM database cannot be opened: {e.strerror}")
        yield None
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            db.notes.append("the RPM database is not a regular file: not read")
            yield None
        else:
            yield fd
    finally:
        os.close(fd)


def _load_bdb(db: Database, path: bytes) -> None:
    with _opened(db, path) as fd:
        if fd is None:
            return
        try:
            pages = rpmbdb.HashFile(fd)
            for key, blob in pages.items():
                if len(key) == 4 and len(blob) > 8:  # instance 0 holds a counter
                    _add_package(db, blob)
        except (rpmbdb.BdbError, OSError) as e:
            db.notes.append(f"the RPM database (Berkeley DB) cannot be read: {e}")
            return
        if pages.skipped:
            db.notes.append(f"{pages.skipped} pages of the RPM database did not parse")


def _load_sqlite(db: Database, path: bytes) -> None:
    with _opened(db, path) as fd:
        if fd is None:
            return
        wal = os.path.getsize(path + b"-wal") if os.path.exists(path + b"-wal") else 0
        if wal:
            db.notes.append(f"the RPM database has {wal} bytes in its -wal file, not read")
        try:
            conn = sqlite3.connect(f"file:/proc/self/fd/{fd}?mode=ro&immutable=1", uri=True)
            try:
                _read_packages(db, conn)
            finally:
                conn.close()
        except sqlite3.Error as e:
            db.notes.append(f"the RPM database cannot be read as SQLite: {e}")


def _read_packages(db: Database, conn: sqlite3.Connection) -> None:
    """The blobs of table ``Packages``. The schema is the host's: a ``Packages`` that is
    a view over an endless recursive query would be sorted for ever, so only a table is
    read, and SQLite stops after ``MAX_STEPS`` steps whatever the file holds."""
    kind = conn.execute(
        "SELECT type FROM sqlite_master WHERE name = 'Packages' COLLATE NOCASE"
    ).fetchone()
    if kind is None or kind[0] != "table":
        db.notes.append("the RPM database's Packages is not a table: not read")
        return
    steps = [0]

    def stop() -> int:
        steps[0] += 1
        return int(steps[0] > MAX_STEPS // 10_000)

    conn.set_progress_handler(stop, 10_000)
    for (blob,) in conn.execute("SELECT blob FROM Packages ORDER BY hnum"):
        _add_package(db, blob if isinstance(blob, bytes) else b"")  # text: a bad header


def _add_package(db: Database, blob: bytes) -> None:
    try:
        tags = parse_header(blob)
        files = list(files_of(tags))
    except (HeaderError, ValueError, IndexError, TypeError, struct.error) as e:
        db.notes.append(f"a package header was skipped: {e}")
        return
    if tags.get(NAME) == b"gpg-pubkey":
        return  # an imported signing key, not software
    package = _package_name(tags)
    db.packages += 1
    algo = tags.get(FILEDIGESTALGO, (1,))[0]
    db.algorithms[package] = ALGORITHMS.get(algo, "md5")
    for path, digest, mode, flags, state in files:
        db.owned.add(db.canonical(path))
        if state != 0 or flags & RPMFILE_GHOST or not digest or not stat.S_ISREG(mode):
            continue  # not installed, a ghost, a directory or a symlink: no content to check
        target = db.conffiles if flags & RPMFILE_CONFIG else db.digests
        target[path] = (digest.lower(), package)
