"""What a package database says the host's packaged files should be, whichever package
manager wrote it: ``collectors/dpkg.py`` (Debian) and ``collectors/rpmdb.py`` (Red Hat,
SUSE, Fedora) each fill one ``Database``; the ``packages`` and ``executables``
collectors read only this."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Database:
    root: bytes  # b"/" on a host
    manager: str  # "dpkg" or "rpm": named in the summary and the report
    # path -> (hex digest as the database gives it, package)
    digests: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)
    conffiles: dict[bytes, tuple[bytes, str]] = field(default_factory=dict)
    owned: set[bytes] = field(default_factory=set)  # canonical paths of packaged files
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
        directory, name = os.path.split(path)
        real = self._dirs.get(directory)
        if real is None:
            real = os.path.realpath(self.host(directory))
            self._dirs[directory] = real
        return os.path.join(real, name)

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
