"""``packages``: every file of every installed package checked against the package
database, read directly (Debian: collectors/dpkg.py; RPM: collectors/rpmdb.py); no host
binary is run.

A trojaned ``sshd``, ``ps``, ``ls`` or ``libkeyutils`` is how Linux intrusions hide, and
the package database is the one record of what those files should be that an intruder
rarely thinks to rewrite. Each file is opened without following a symlink and its digest
(MD5 for dpkg, the package's own algorithm for RPM, SHA-256 today) compared with the
database's; conffiles (which administrators edit) are compared with
the MD5 in ``status`` and listed, not flagged. Files that dpkg's own ``path-exclude``
configuration keeps off the disk (docs on minimal images) are not "missing".

``artifacts/packages/integrity.json``: modified, missing and changed-conffile lists, and
the executables in system paths no package owns (``unpackaged``). Each modified
executable or library is a HIGH finding, each other modified package file MEDIUM, each
missing executable MEDIUM (rules: collectors/rules/triage.toml). ``ctx.shared["pkgdb"]`` hands the
database to the executables collector, and when that collector runs too, the SHA-256 of
the package executables read here goes with it (collectors/rundigests.py). The reading
and hashing is collectors/filedigest.py: one read a file, on every core; dpkg's MD5 in
SIMD lanes (collectors/lanedigest.py), the engine named in the journal.

It runs alongside the rest of its stage (agent/alongside.py): for most of the run it is
the only collector left reading, and ``executables`` meanwhile hashes what no package
owns on the other core, then waits for the digests this one hands on. The executables
in the system directories are walked once for both (collectors/systemwalk.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fnmatch import fnmatchcase
from itertools import islice
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .filedigest import Extra, Read, Want, digest_files
from .findings import apply_rules, rules_of, summarize
from .lanedigest import md5_engine
from .pkgdb import Database
from .pkgforked import Screen, digest_in_children, usable
from .readfile import read_regular
from .rundigests import RunDigests, offer
from .systemwalk import SYSTEM_DIRS, is_executable, system_executables
from .textview import json_bytes, plural
from .triagegate import package_db, runs_in, triage_settings

__all__ = ["SYSTEM_DIRS", "PackagesCollector", "in_system_dirs", "is_executable"]

OUT = "artifacts/packages/integrity.json"
# (database path, digest the database gives, package, conffile?, hashlib algorithm, host path)
Check = tuple[bytes, bytes, str, bool, str, bytes]


_TOPS = tuple(b"/" + d + b"/" for d in SYSTEM_DIRS)
_BIN_TOPS = tuple(t for t in _TOPS if b"lib" not in t)


def in_system_dirs(path: bytes, libraries: bool = True) -> bool:
    """Is the database path ``path`` under a system bin/sbin (or lib) directory?"""
    return path.startswith(_TOPS if libraries else _BIN_TOPS)


def _expected(check: Check) -> tuple[bytes, str]:
    """The digest the database gives a file and its algorithm (what a child compares)."""
    return check[1], check[4]


def _excluded_by_dpkg(root: bytes) -> list[tuple[bool, str]]:
    """``path-exclude``/``path-include`` lines of ``/etc/dpkg/dpkg.cfg.d/*``, in order."""
    rules: list[tuple[bool, str]] = []
    folder = os.path.join(root, b"etc/dpkg/dpkg.cfg.d")
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return rules
    for name in names:
        try:
            data = read_regular(os.path.join(folder, name), 1024 * 1024, follow=False)
            text = data.decode("utf-8", "replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key in ("path-exclude", "path-include") and value:
                rules.append((key == "path-exclude", value.strip()))
    return rules


def _dropped(path: bytes, rules: list[tuple[bool, str]]) -> bool:
    text, dropped = path.decode("utf-8", "surrogateescape"), False
    for exclude, pattern in rules:
        if fnmatchcase(text, pattern):
            dropped = exclude
    return dropped


def _sha256_screen(root: bytes) -> Screen:
    """Which package files the ``executables`` collector will hash (an executable or
    library in a system directory), as far as the host path alone tells: nothing outside
    the system directories, a library's name there always, any other file there where
    its mode is executable. Told before the stat to the check in C
    (collectors/pkgforked.py); ``_executable_sha256`` completes it with the mode."""
    cut = len(root.rstrip(b"/"))

    def screen(path: bytes) -> int:
        rel = path[cut:]
        if not in_system_dirs(rel):
            return 0
        return 2 if is_executable(rel, 0) else 1

    return screen


def _executable_sha256(root: bytes) -> Extra:
    """SHA-256 too, from the same read, for the files ``_sha256_screen`` picks."""
    screen = _sha256_screen(root)

    def extra(want: Want, st: os.stat_result) -> tuple[str, ...]:
        mark = screen(want.path)
        return ("sha256",) if mark == 2 or (mark == 1 and st.st_mode & 0o111) else ()

    return extra


class PackagesCollector(Collector):
    name: ClassVar[str] = "packages"
    stage: ClassVar[Stage] = Stage.SLOW
    # Early, right after the logs (the volatile part of the stage): it reads for most of
    # the run, in its own thread, while the persistence trees and the rest are collected.
    order: ClassVar[int] = 16
    description: ClassVar[str] = "installed package files checked against the dpkg or RPM database"
    alongside: ClassVar[bool] = True
    root: bytes = b"/"  # tests point it at a tree
    _offered: RunDigests | None = None

    def prepare(self, ctx: CollectContext) -> None:
        """Offer the SHA-256 table before ``executables`` can start and look for it."""
        if runs_in(ctx, self.name) and runs_in(ctx, "executables"):
            self._offered = offer(ctx, "sha256")

    def collect(self, ctx: CollectContext) -> None:
        if self._offered is None and runs_in(ctx, "executables"):
            self._offered = offer(ctx, "sha256")  # driven without ``prepare`` (tests)
        try:
            self._collect(ctx, self._offered)
        finally:  # whatever happened, ``executables`` waits no longer
            if self._offered is not None:
                self._offered.finish()

    def _collect(self, ctx: CollectContext, table: RunDigests | None) -> None:
        if triage_settings(ctx, self.name, "Packages") is None:
            return
        db = package_db(ctx, self.root)
        if db is None:
            ctx.summary.add("Packages", "no dpkg or RPM database (not checked)")
            return
        for note in db.notes:
            ctx.error(self.name, note, None)
        dropped = _excluded_by_dpkg(self.root) if db.manager == "dpkg" else []
        report: dict[str, list[dict[str, Any]]] = {
            "modified": [], "missing": [], "conffiles_changed": [], "not_regular": [],
            "unreadable": [], "unpackaged_executables": [],
        }  # fmt: skip
        extra = _executable_sha256(self.root) if table is not None else None
        count, md5 = 0, md5_engine() if db.manager == "dpkg" else "hashlib"
        ctx.journal.append("event", event="md5-engine", collector=self.name, engine=md5)
        ctx.log.info("md5_engine", collector=self.name, engine=md5)

        def judge(tag: Check, read: Read) -> None:
            self._judge(ctx, report, tag, read, dropped)

        if usable(md5):  # on every core, out of this interpreter's lock

            def share(part: int, parts: int) -> Iterator[tuple[Check, Want]]:
                return self._wants(db, part, parts)

            screen = _sha256_screen(self.root) if extra is not None else None
            count = digest_in_children(share, _expected, judge, extra, md5, table, screen)
        else:
            for tag, read in digest_files(self._wants(db), extra, md5_engine=md5):
                count += 1
                if table is not None and "sha256" in read.digests and read.stat is not None:
                    table.put(read.stat, read.digests["sha256"])
                judge(tag, read)
        self._unpackaged(ctx, db, report)
        for rows in report.values():  # the same file whatever order the files finished in
            rows.sort(key=lambda row: row["path"])
        ctx.engine.store_bytes(OUT, json_bytes(report), self.name, kind="package-integrity")
        ctx.summary.add(
            "Packages",
            f"{plural(db.packages, db.manager + ' package')}, {plural(count, 'file')}: "
            f"{len(report['modified'])} modified, {len(report['missing'])} missing, "
            f"{len(report['unpackaged_executables'])} unpackaged executables",
        )
        summarize(ctx, self.name, rules_of(ctx).ids("package-file"))

    def _wants(self, db: Database, part: int = 0, parts: int = 1) -> Iterator[tuple[Check, Want]]:
        """Every package file, then every conffile, with where it is on the host (or
        every ``parts``-th of each from the ``part``-th on: a child's share)."""
        for path, (want, pkg) in islice(db.digests.items(), part, None, parts):
            if path not in db.conffiles:
                algo, host = db.algorithm(pkg), db.location(path, pkg)
                yield (path, want, pkg, False, algo, host), Want(host, (algo,))
        for path, (want, pkg) in islice(db.conffiles.items(), part, None, parts):
            algo, host = db.algorithm(pkg), db.location(path, pkg)
            yield (path, want, pkg, True, algo, host), Want(host, (algo,))

    def _judge(
        self,
        ctx: CollectContext,
        report: dict[str, list[dict[str, Any]]],
        check: Check,
        read: Read,
        dropped: list[tuple[bool, str]],
    ) -> None:
        path, want, pkg, conf, algo, host = check
        state, mode = read.state, read.mode
        digest = read.digests.get(algo)
        if state == "ok" and digest is not None and digest.encode() == want:
            return  # the common case: nothing to build
        if state == "ok" and digest is None:
            state = "unreadable"  # an algorithm this Python lacks: not checked
        row: dict[str, Any] = {
            "path": os.fsdecode(path),
            "package": pkg,
            f"expected_{algo}": want.decode(),
        }
        if state == "ok":
            row[algo] = digest
            if conf:
                report["conffiles_changed"].append(row)
                return
            report["modified"].append(row)
            executable = is_executable(path, mode) or in_system_dirs(path)
            fact = {**row, "state": "modified", "executable": executable, "algorithm": algo}
            apply_rules(ctx, self.name, "package-file", fact, host, OUT)
        elif state == "missing":
            if _dropped(path, dropped):
                return
            report["missing"].append(row)
            executable = is_executable(path, 0) or in_system_dirs(path, libraries=False)
            fact = {**row, "state": "missing", "executable": executable, "algorithm": algo}
            apply_rules(ctx, self.name, "package-file", fact, host, OUT)
        else:
            report["not_regular" if state == "not-regular" else "unreadable"].append(row)

    def _unpackaged(
        self, ctx: CollectContext, db: Database, report: dict[str, list[dict[str, Any]]]
    ) -> None:
        walked = system_executables(ctx, self.root)
        for real in walked.tops:
            for path, error in walked.errors[real]:
                ctx.error(self.name, f"cannot list: {error.strerror}", path)
            for path, st, _ in walked.files[real]:
                if not db.is_packaged(path):
                    report["unpackaged_executables"].append(
                        {"path": os.fsdecode(path), "size": st.st_size, "mtime": int(st.st_mtime)}
                    )
