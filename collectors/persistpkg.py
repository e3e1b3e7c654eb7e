"""Is a configuration file as its package shipped it? The question that separates an
intruder's cron job from the one ``logrotate`` installed, answered from the package
database (collectors/dpkg.py, collectors/rpmdb.py), never by running ``dpkg`` or ``rpm``.

``unchanged``: a packaged file (a conffile, or a file with a digest in the database) whose
content matches; ``modified``: it does not; ``packaged``: a package lists it but keeps no
digest (a symlink, a generated file); ``unpackaged``: no package lists it; ``unknown``: no
database, or the file was too large to read whole."""

from __future__ import annotations

import hashlib
import os

from .pkgdb import Database

# Where the files the persistence collector judges live (database paths): the index is
# built for these only, not for the ~100,000 files of a server's packages.
CONFIG_PREFIXES = (
    b"/etc/", b"/lib/systemd/", b"/usr/lib/systemd/", b"/lib/udev/", b"/usr/lib/udev/",
    b"/lib/modprobe.d/", b"/usr/lib/modprobe.d/", b"/lib/modules-load.d/",
    b"/usr/lib/modules-load.d/", b"/usr/local/lib/systemd/", b"/var/spool/",
    *(p + d for p in (b"/usr/lib/", b"/lib/") for d in (
        b"tmpfiles.d/", b"sysctl.d/", b"binfmt.d/", b"environment.d/", b"dracut/")),
    b"/usr/share/initramfs-tools/", b"/usr/share/systemd/", b"/usr/share/dbus-1/",
    b"/usr/share/polkit-1/",
)  # fmt: skip


def wanted(path: bytes) -> bool:
    """The database paths this index needs: configuration files, and the PAM modules and
    unit symlinks whose ownership a rule asks about."""
    return path.startswith(CONFIG_PREFIXES) or b"/security/" in path


class PackageIndex:
    def __init__(self, db: Database | None) -> None:
        self.db = db
        # canonical host path -> (digest as the database gives it, hashlib algorithm)
        self._digests: dict[bytes, tuple[bytes, str]] | None = None

    def _index(self) -> dict[bytes, tuple[bytes, str]]:
        """Both digest tables by canonical host path, built once: on a merged-/usr host
        the database says ``/lib/systemd/...`` where the walk meets ``/usr/lib/systemd/...``."""
        if self._digests is None:
            assert self.db is not None
            db = self.db
            self._digests = {
                db.canonical(p): (digest, db.algorithm(package))
                for table in (db.digests.items(), db.conffiles.items())
                for p, (digest, package) in table
                if p.startswith(CONFIG_PREFIXES)
            }
        return self._digests

    def state(self, host_path: bytes, data: bytes | None, cap: int) -> str:
        if self.db is None:
            return "unknown"
        directory, name = os.path.split(host_path)
        canonical = os.path.join(os.path.realpath(directory), name)
        want = self._index().get(canonical)
        if want is None:
            return "packaged" if self.db.is_packaged(canonical) else "unpackaged"
        if data is None or len(data) >= cap:
            return "unknown"
        try:
            digest = hashlib.new(want[1], data, usedforsecurity=False).hexdigest().encode()
        except ValueError:  # an algorithm this Python lacks
            return "unknown"
        return "unchanged" if digest == want[0] else "modified"

    def any_unpackaged(self, root: bytes, targets: list[str]) -> bool:
        """Does one of ``targets`` (host paths) exist and belong to no package?"""
        if self.db is None:
            return False
        for target in targets:
            host = os.path.join(root, os.fsencode(target).lstrip(b"/"))
            if os.path.lexists(host) and not self.db.is_packaged(os.path.realpath(host)):
                return True
        return False
