"""``executables``: the SHA-256 of every executable and library in the system and user
bin/sbin/lib paths and of every file where attackers stage (``/tmp``, ``/var/tmp``,
``/dev/shm``), and the privileged files: set-user-ID, set-group-ID, or carrying file
capabilities (the ``security.capability`` attribute).

``artifacts/executables/sha256.jsonl`` is one streamed artifact, one JSON line per file
(path, sha256, size, mode, owner, times), hashed with ``manifests.digest`` as the copy
engine hashes, each file opened without following a symlink and checked to be the one
the walk saw. ``privileged.json`` lists the privileged files with owner and times and
whether a package owns them. Findings: a privileged file no package owns (HIGH, on a
Debian host, where the database can tell), an executable in a world-writable staging
directory (MEDIUM)."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from manifests.digest import sha256_fd

from .base import Collector, Stage
from .context import CollectContext
from .findings import record_finding, summarize
from .logprofile import load_profile
from .packages import SYSTEM_DIRS, is_executable, load_database
from .pkgdb import Database
from .source import open_source
from .textview import json_bytes
from .triageprofile import runs
from .walk import walk_stats

LISTING = "artifacts/executables/sha256.jsonl"
PRIVILEGED = "artifacts/executables/privileged.json"
STAGING = (b"tmp", b"var/tmp", b"dev/shm")
USER_BIN = (b"bin", b".local/bin")
CAPABILITY = "security.capability"
BATCH = 256
# Files hashed per staging directory: the rest are counted in one ``skipped`` record, so a
# directory of a million files (a benchmark left in /dev/shm) cannot hold the run for
# many minutes. Attackers' staging holds a handful.
STAGING_MAX_FILES = 20_000
RULES = {"privileged-unpackaged", "executable-in-staging-dir"}


def _hash(path: bytes, seen: os.stat_result) -> str | None:
    """SHA-256 of the file the walk saw at ``path``, or None if it is no longer that."""
    try:
        fd = open_source(path)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) or not stat.S_ISREG(st.st_mode):
            return None
        return sha256_fd(fd)[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def capability(path: bytes) -> str | None:
    """The ``security.capability`` attribute, hex, or None when there is none."""
    try:
        return os.getxattr(path, CAPABILITY, follow_symlinks=False).hex()
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        return None


class ExecutablesCollector(Collector):
    name: ClassVar[str] = "executables"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 65  # after packages: it reuses the package database
    description: ClassVar[str] = "SHA-256 of executables and staged files; SUID/SGID/caps"
    root: bytes = b"/"  # tests point it at a tree

    def tops(self) -> list[tuple[bytes, bool]]:
        """(directory, staging?) to walk, each real directory once."""
        found: dict[bytes, bool] = {}
        homes = self._homes()
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

    def _homes(self) -> list[bytes]:
        home = os.path.join(self.root, b"home")
        try:
            users = sorted(os.listdir(home))
        except OSError:
            users = []
        return [os.path.join(self.root, b"root")] + [os.path.join(home, u) for u in users]

    def collect(self, ctx: CollectContext) -> None:
        profile = ctx.options.log_profile or load_profile(None)
        if not runs(profile.triage, self.name, ctx.options.only):
            ctx.summary.add("Executables", f"not in profile {profile.name} (--profile full)")
            return
        db = ctx.shared.get("pkgdb") or load_database(self.root)
        privileged: list[dict[str, Any]] = []
        count = 0
        out_st = os.stat(ctx.root)
        with (
            ctx.engine.open_stream(LISTING, self.name, kind="executable-hashes") as out,
            ThreadPoolExecutor(max_workers=4) as pool,
        ):
            for top, staging in self.tops():
                batch: list[tuple[bytes, os.stat_result, int | None]] = []
                for item in self._candidates(ctx, top, staging, (out_st.st_dev, out_st.st_ino)):
                    batch.append(item)
                    if len(batch) >= BATCH:
                        count += self._hash_batch(ctx, pool, batch, staging, db, privileged, out)
                        batch = []
                count += self._hash_batch(ctx, pool, batch, staging, db, privileged, out)
        ctx.engine.store_bytes(PRIVILEGED, json_bytes(privileged), self.name, kind="privileged")
        ctx.summary.add("Executables", f"{count} hashed, {len(privileged)} SUID/SGID/capability")
        summarize(ctx, self.name, RULES)

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

    def _hash_batch(
        self,
        ctx: CollectContext,
        pool: ThreadPoolExecutor,
        batch: list[tuple[bytes, os.stat_result, int | None]],
        staging: bool,
        db: Database | None,
        privileged: list[dict[str, Any]],
        out: Any,
    ) -> int:
        digests = pool.map(lambda item: _hash(item[0], item[1]), batch)
        for (path, st, birth), digest in zip(batch, digests, strict=True):
            row = {
                "path": os.fsdecode(path), "sha256": digest, "size": st.st_size,
                "mode": f"{st.st_mode:o}", "uid": st.st_uid, "gid": st.st_gid,
                "mtime": int(st.st_mtime), "ctime": int(st.st_ctime),
                "birth": birth // 10**9 if birth else None,
            }  # fmt: skip
            out.write(json.dumps(row, sort_keys=True).encode() + b"\n")
            self._judge(ctx, path, st, row, staging, db, privileged)
        return len(batch)

    def _judge(
        self,
        ctx: CollectContext,
        path: bytes,
        st: os.stat_result,
        row: dict[str, Any],
        staging: bool,
        db: Database | None,
        privileged: list[dict[str, Any]],
    ) -> None:
        cap = capability(path)
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID) or cap is not None:
            packaged = db.is_packaged(path) if db is not None else None
            privileged.append({**row, "capability": cap, "packaged": packaged})
            if packaged is False:
                record_finding(
                    ctx, self.name, "privileged-unpackaged", "HIGH", path,
                    f"{row['path']} is set-ID or has capabilities and no package owns it",
                    PRIVILEGED, mode=row["mode"], capability=cap, sha256=row["sha256"],
                )  # fmt: skip
        if staging and st.st_mode & 0o111:
            record_finding(
                ctx, self.name, "executable-in-staging-dir", "MEDIUM", path,
                f"{row['path']} is executable in a world-writable directory", LISTING,
                sha256=row["sha256"],
            )  # fmt: skip
