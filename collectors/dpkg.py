"""Reading the Debian package database directly: no ``dpkg``, no ``debsums``, nothing of
the host's is run (a trojaned host's tools are what is being checked).

``/var/lib/dpkg/info/<package>.md5sums`` holds each packaged file's MD5 (path without its
leading '/'); ``<package>.list`` every path a package installed; the ``Conffiles:`` field
of ``/var/lib/dpkg/status`` each configuration file's MD5 as shipped;
``/var/lib/dpkg/diversions`` (triplets: original, diverted-to, package) files moved aside
by another package. Paths are bytes. ``root`` prefixes every path (tests use a tree).

On a merged-/usr system the database says ``/bin/ls`` where the file is at
``/usr/bin/ls``: ``canonical`` resolves a path's directory (cached), so both name one
file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from .pkgdb import Database
from .readfile import read_regular

DB = b"var/lib/dpkg"
MAX_DB_FILE = 64 * 1024 * 1024  # a status file larger than this is not a real one


def _read(path: bytes) -> bytes:
    """A database file, never through a symlink, and never opened if it is a FIFO (a
    FIFO swapped in would hold the whole run waiting for a writer) or a device."""
    return read_regular(path, MAX_DB_FILE, follow=False)


def _package_of(name: bytes) -> str:
    return name.rsplit(b".", 1)[0].decode("utf-8", "replace")


def load(root: bytes = b"/", keep: Callable[[bytes], bool] | None = None) -> Database | None:
    """The database under ``root``, or None where there is none (not Debian). With
    ``keep``, only the files whose database path it accepts are indexed (``partial``):
    a collector that judges a few hundred configuration files need not hold 100,000."""
    info = os.path.join(root, DB, b"info")
    try:
        names = sorted(os.listdir(info))
    except OSError:
        return None
    db = Database(root, manager="dpkg", partial=keep is not None)
    for name in names:
        if name.endswith(b".md5sums"):
            package = _package_of(name)
            for line in _lines(os.path.join(info, name)):
                digest, _, rel = line.partition(b"  ")
                path = b"/" + rel.lstrip(b"/")
                if rel and (keep is None or keep(path)):
                    db.digests[path] = (digest.lower(), package)
        elif name.endswith(b".list"):
            db.packages += 1
            lines = _lines(os.path.join(info, name))
            owned = (p for p in lines if p.startswith(b"/") and (keep is None or keep(p)))
            db.owned.update(map(db.canonical, owned))
    _status(db, os.path.join(root, DB, b"status"))
    _diversions(db, os.path.join(root, DB, b"diversions"))
    return db


def _lines(path: bytes) -> Iterator[bytes]:
    try:
        data = _read(path)
    except OSError:
        return
    yield from (line for line in data.split(b"\n") if line)


def _status(db: Database, path: bytes) -> None:
    """The ``Conffiles:`` of each installed package (`` /etc/x <md5> [obsolete]``)."""
    package, in_conffiles = "", False
    for line in _lines(path):
        if line.startswith(b"Package:"):
            package = line[8:].strip().decode("utf-8", "replace")
            in_conffiles = False
        elif line.startswith(b"Conffiles:"):
            in_conffiles = True
        elif in_conffiles and line.startswith(b" "):
            parts = line.split()
            if len(parts) >= 2 and b"obsolete" not in parts[2:] and parts[1] != b"newconffile":
                db.conffiles[parts[0]] = (parts[1].lower(), package)
        else:
            in_conffiles = False


def _diversions(db: Database, path: bytes) -> None:
    lines = list(_lines(path))
    for i in range(0, len(lines) - 2, 3):
        db.diversions[lines[i]] = (lines[i + 1], lines[i + 2].decode("utf-8", "replace"))
        db.owned.add(db.canonical(lines[i + 1]))
