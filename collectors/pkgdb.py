"""What a package database says the host's packaged files should be, whichever package
manager wrote it: ``collectors/dpkg.py`` (Debian) and ``collectors/rpmdb.py`` (Red Hat,
SUSE, Fedora) each fill one ``Database``; the ``packages`` and ``executables``
collectors read only this."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from .hashset import HashSet64


@dataclass
class Database:
    root: bytes  # b"/" on a host
    manager: str  # "dpkg" or "rpm": named in the summary and the report
    # path -> (hex digest as the database gives it, package)
    digests: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)
    conffiles: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)
    # canonical paths of packaged files, as 64-bit hashes (collectors/hashset.py): 16
    # bytes a path instead of about 130, for the 100,000 of a server's packages (14 MB
    # here). A collision would make one unpackaged file look packaged: with Python's
    # per-process keyed hash, about once in 10^9 runs that look up 40,000 files.
    owned: HashSet64 = field(default_factory=HashSet64)
    # original -> (diverted-to, diverting package)
    diversions: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)
    # package -> hashlib name of its file digests; dpkg's are all MD5, RPM's per package
    algorithms: dict[str, str] = field(default_factory=dict)
    packages: int = 0
    partial: bool = False  # loaded with a ``keep`` filter (dpkg.load): only some files
    notes: list[str] = field(default_factory=list)  # what could not be read, in words
    _dirs: dict[bytes, bytes] = field(default_factory=dict)

    def algorithm(self, package: str) -> str:
        return self.algorithms.get(package, "md5")

    def host(self, path: bytes) -> bytes:
        """The path on the host (under ``root``) of a database path ``/x/y``."""
        return os.path.join(self.root, path.lstrip(b"/"))

    def canonical(self, path: bytes) -> bytes:
        """``path`` (a database path) with its directory's symlinks resolved: the one
        name under which a walk of the host meets it."""
        directory, _, name = path.rpartition(b"/")  # os.path's split and join, for less
        real = self._dirs.get(directory)
        if real is None:
            real = self._dirs[directory] = self._resolve(directory or b"/")
        return b"/" + name if real == b"/" else real + b"/" + name

    def _resolve(self, directory: bytes) -> bytes:
        """``realpath`` of a database directory on the host, at one ``lstat`` per
        directory not resolved before (``realpath`` takes one per component of every
        path, and a server's packages have some 10,000 directories): the nearest resolved
        ancestor joined with each name below it, resolved again only where a name is a
        symlink. Cached; iterative, so no path is too deep for it."""
        todo: list[bytes] = []
        at = directory
        while at not in self._dirs:
            parent, name = os.path.split(at)
            if not name or name in (b".", b"..") or parent == at:
                self._dirs[at] = os.path.realpath(self.host(at))
                break
            todo.append(at)
            at = parent
        real = self._dirs[at]
        for at in reversed(todo):
            joined = os.path.join(real, os.path.basename(at))
            try:
                link = stat.S_ISLNK(os.lstat(joined).st_mode)
            except OSError:
                link = False  # missing: realpath keeps the name as it is
            real = self._dirs[at] = os.path.realpath(joined) if link else joined
        return real

    def location(self, path: bytes, package: str) -> bytes:
        """Where ``package``'s file ``path`` is on the host: a diversion moves another
        package's file aside, never the diverting package's own."""
        diverted = self.diversions.get(path)
        if diverted is not None and diverted[1] != package:
            return self.host(diverted[0])
        return self.host(path)

    def is_packaged(self, host_path: bytes) -> bool:
        """Is the file at ``host_path`` (as a walk of the host found it) in a package?"""
        return host_path in self.owned
