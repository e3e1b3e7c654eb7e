"""``executables``: the SHA-256 of every executable and library in the system and user
bin/sbin/lib paths and of every file where attackers stage (``/tmp``, ``/var/tmp``,
``/dev/shm``), and the privileged files: set-user-ID, set-group-ID, or carrying file
capabilities (the ``security.capability`` attribute).

``artifacts/executables/sha256.jsonl`` is one streamed artifact, one JSON line per file
(path, sha256, size, mode, owner, times), hashed by ``collectors/filedigest.py``, each
file opened without following a symlink and checked to be the one the walk saw; the
package executables the ``packages`` collector already read in this run come with their
SHA-256 from that read (``collectors/rundigests.py``). While ``packages`` is still
reading (it runs alongside the stage), the files no package owns are hashed meanwhile,
and the packaged ones once it hands its digests on; the listing keeps the walk's order
either way. The system directories' walk is shared with ``packages``
(collectors/systemwalk.py). ``privileged.json`` lists the
privileged files with owner and times and whether a package owns them. Findings: a
privileged file no package owns (HIGH, on a Debian host, where the database can tell),
an executable in a world-writable staging directory (MEDIUM); both rules are data
(collectors/rules/triage.toml)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .filedigest import Read, Want, digest_files
from .findings import apply_rules, rules_of, summarize
from .homes import user_homes
from .pkgdb import Database
from .rundigests import RunDigests, taken
from .systemwalk import SYSTEM_DIRS, Found, is_executable, system_executables
from .textview import json_bytes
from .triagegate import package_db, triage_settings
from .walk import walk_stats

LISTING = "artifacts/executables/sha256.jsonl"
PRIVILEGED = "artifacts/executables/privileged.json"
STAGING = (b"tmp", b"var/tmp", b"dev/shm")
USER_BIN = (b"bin", b".local/bin")
CAPABILITY = "security.capability"
# Files hashed per staging directory: the rest are counted in one ``skipped`` record, so a
# directory of a million files (a benchmark left in /dev/shm) cannot hold the run for
# many minutes. Attackers' staging holds a handful.
STAGING_MAX_FILES = 20_000
# Bytes hashed of one staging file: a larger one is listed with its size and no digest,
# and a ``skipped`` record says so. Test runs and attackers alike leave sparse files of
# tens of GiB in /tmp (seconds of SHA-256 per GiB: one such file would hold the run for
# minutes); a staged tool or archive is far smaller.
STAGING_MAX_HASH = 1024**3
# (path, the walk's stat, birth time in ns or None, in a staging directory?, digest
# handed on by ``packages``?)
Candidate = tuple[bytes, os.stat_result, int | None, bool, bool]
# (path, the walk's stat, birth time in ns or None, in a staging directory?)
Walked = tuple[bytes, os.stat_result, int | None, bool]


def capability(path: bytes) -> str | None:
    """The ``security.capability`` attribute, hex, or None when there is none (or it
    cannot be read: ENODATA, ENOTSUP, a file gone)."""
    try:
        return os.getxattr(path, CAPABILITY, follow_symlinks=False).hex()
    except OSError:
        return None


def _restat(path: bytes, seen: os.stat_result) -> os.stat_result | None:
    """The file's stat now, if it is still the inode the walk saw (else None). A handed
    digest is checked against this, not the walk's stat: the walk may be older than the
    read ``packages`` made (collectors/systemwalk.py), and a change after the read must
    still show."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if (st.st_dev, st.st_ino) == (seen.st_dev, seen.st_ino) else None


class ExecutablesCollector(Collector):
    name: ClassVar[str] = "executables"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 65  # after packages: it reuses the package database
    description: ClassVar[str] = "SHA-256 of executables and staged files; SUID/SGID/caps"
    root: bytes = b"/"  # tests point it at a tree

    def tops(self) -> list[tuple[bytes, bool]]:
        """(directory, staging?) to walk, each real directory once."""
        found: dict[bytes, bool] = {}
        homes = [home for home, _ in user_homes(self.root)]
        candidates = [(os.path.join(self.root, d), False) for d in SYSTEM_DIRS]
        candidates += [(os.path.join(h, d), False) for h in homes for d in USER_BIN]
        candidates += [(os.path.join(self.root, d), True) for d in STAGING]
        for path, staging in candidates:
            real = os.path.realpath(path)
            if os.path.isdir(real) and not any(
                real == t or real.startswith(t.rstrip(b"/") + b"/") for t in found
            ):
                found[real] = staging
        return list(found.items())

    def collect(self, ctx: CollectContext) -> None:
        if triage_settings(ctx, self.name, "Executables") is None:
            return
        db = package_db(ctx, self.root)
        handed = taken(ctx, "sha256")  # the package executables ``packages`` read
        privileged: list[dict[str, Any]] = []
        count = 0
        out_st = os.stat(ctx.root)
        with ctx.engine.open_stream(LISTING, self.name, kind="executable-hashes") as out:
            for (path, st, birth, staging, handed_on), read in self._reads(
                ctx, (out_st.st_dev, out_st.st_ino), handed, db
            ):
                row = {
                    "path": os.fsdecode(path), "sha256": read.digests.get("sha256"),
                    "size": st.st_size, "mode": f"{st.st_mode:o}", "uid": st.st_uid,
                    "gid": st.st_gid, "mtime": int(st.st_mtime), "ctime": int(st.st_ctime),
                    "birth": birth // 10**9 if birth else None,
                }  # fmt: skip
                out.write(json.dumps(row, sort_keys=True).encode() + b"\n")
                # through the descriptor that was hashed; by path where none was opened
                if read.state == "ok" and not handed_on:
                    cap = read.xattr.hex() if read.xattr is not None else None
                else:
                    cap = capability(path)
                self._judge(ctx, path, st, row, cap, staging, db, privileged)
                count += 1
        ctx.engine.store_bytes(PRIVILEGED, json_bytes(privileged), self.name, kind="privileged")
        ctx.summary.add("Executables", f"{count} hashed, {len(privileged)} SUID/SGID/capability")
        summarize(ctx, self.name, rules_of(ctx).ids("privileged-file", "staged-file"))

    def _reads(
        self,
        ctx: CollectContext,
        output: tuple[int, int],
        handed: RunDigests | None,
        db: Database | None,
    ) -> Iterator[tuple[Candidate, Read]]:
        """Every file's digest, in the walk's order. While ``packages`` is still reading
        (its table not finished), the files it cannot hand on (no package owns them) are
        hashed first, the packaged ones once it is done: never hashed twice."""
        if handed is None or handed.finished():
            yield from digest_files(self._wants(ctx, self._walked(ctx, output), handed))
            return
        walked = list(self._walked(ctx, output))
        early: dict[int, Read] = {}
        alone = (
            (i, Want(path, ("sha256",), (st.st_dev, st.st_ino), CAPABILITY))
            for i, (path, st, _, staging) in enumerate(walked)
            if not (staging and st.st_size > STAGING_MAX_HASH)
            and not (db is not None and db.is_packaged(path))
        )
        for i, read in digest_files(alone):
            early[i] = read
        handed.wait()
        yield from digest_files(self._wants(ctx, walked, handed, early))

    def _wants(
        self,
        ctx: CollectContext,
        walked: Iterable[Walked],
        handed: RunDigests | None,
        early: dict[int, Read] | None = None,
    ) -> Iterator[tuple[Candidate, Want | Read]]:
        """Every file to hash, with its digest where ``packages`` handed it on unchanged
        (or ``early``: read already, by the position in ``walked``)."""
        for i, (path, st, birth, staging) in enumerate(walked):
            if staging and st.st_size > STAGING_MAX_HASH:
                ctx.engine.record_skip(
                    self.name, path, f"{st.st_size} bytes: larger than the staging "
                    "hash cap, listed without a digest", cap=STAGING_MAX_HASH,
                )  # fmt: skip
                yield (path, st, birth, staging, False), Read("too-large", st.st_mode, st, {})
                continue
            if early is not None and i in early:
                yield (path, st, birth, staging, False), early.pop(i)
                continue
            now = _restat(path, st) if handed is not None else None
            digest = handed.take(now) if handed is not None and now is not None else None
            if now is not None and digest is not None:
                read = Read("ok", now.st_mode, now, {"sha256": digest})
                yield (path, now, birth, staging, True), read
            else:
                want = Want(path, ("sha256",), (st.st_dev, st.st_ino), CAPABILITY)
                yield (path, st, birth, staging, False), want

    def _walked(self, ctx: CollectContext, output: tuple[int, int]) -> Iterator[Walked]:
        """Every file to list, in order: the system directories from the run's shared
        walk, the users' bin directories and the staging directories walked here."""
        system = system_executables(ctx, self.root)
        for top, staging in self.tops():
            if not staging and top in system.files:
                for path, error in system.errors[top]:
                    ctx.error(self.name, f"cannot list: {error.strerror}", path)
                found: Iterable[Found] = system.files[top]
            else:
                found = self._candidates(ctx, top, staging, output)
            for path, st, birth in found:
                yield path, st, birth, staging

    def _candidates(
        self, ctx: CollectContext, top: bytes, staging: bool, output: tuple[int, int]
    ) -> Iterator[tuple[bytes, os.stat_result, int | None]]:
        def on_error(path: bytes, error: OSError) -> None:
            ctx.error(self.name, f"cannot list: {error.strerror}", path)

        taken = left = 0
        for entry in walk_stats(top, on_error, exclude=frozenset({output})):
            st = entry.stat
            if entry.is_dir or st is None or not stat.S_ISREG(st.st_mode):
                continue
            if staging and taken >= STAGING_MAX_FILES:
                left = 1  # the walk stops here: counting the rest would cost as much
                break
            if staging or is_executable(entry.path, st.st_mode):
                taken += 1
                yield entry.path, st, entry.birth_ns
        if left:
            ctx.engine.record_skip(
                self.name, top, f"more than {STAGING_MAX_FILES} files: the rest not hashed",
                cap=STAGING_MAX_FILES,
            )  # fmt: skip

    def _judge(
        self,
        ctx: CollectContext,
        path: bytes,
        st: os.stat_result,
        row: dict[str, Any],
        cap: str | None,
        staging: bool,
        db: Database | None,
        privileged: list[dict[str, Any]],
    ) -> None:
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID) or cap is not None:
            packaged = db.is_packaged(path) if db is not None else None
            privileged.append({**row, "capability": cap, "packaged": packaged})
            if packaged is not None:
                fact = {"path": row["path"], "packaged": packaged, "mode": row["mode"],
                        "capability": cap, "sha256": row["sha256"]}  # fmt: skip
                apply_rules(ctx, self.name, "privileged-file", fact, path, PRIVILEGED)
        if staging:
            fact = {"path": row["path"], "executable": bool(st.st_mode & 0o111),
                    "sha256": row["sha256"], "mode": row["mode"]}  # fmt: skip
            apply_rules(ctx, self.name, "staged-file", fact, path, LISTING)
