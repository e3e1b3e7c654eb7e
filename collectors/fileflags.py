"""``fileflags``: the inode flags ``lsattr`` would show, over the paths an intruder makes
undeletable: all of ``/etc``, the persistence trees (cron and at spools, systemd unit
paths, udev, module loading, generators: collectors/persistence.py's ``TREES``), users'
start-up and SSH files, the system ``bin``/``sbin`` directories, the PAM modules and
``/boot``. Not a whole-disk sweep: about two thousand inodes on a Debian server, tens of
milliseconds. With ``inode_flags_wide`` (profile ``full``) also ``/usr/lib``,
``/usr/local``, ``/opt``, ``/srv`` and ``/var/www``.

Read with ``FS_IOC_GETFLAGS`` (collectors/inodeflags.py), never by running ``lsattr``.
``artifacts/fileflags/flagged.jsonl`` lists each inode with a flag a file system does not
set by itself (immutable ``i``, append-only ``a``, no-dump ``d``, ...), its letters as
lsattr prints them and its stat; ``artifacts/fileflags/summary.json`` says what was swept,
how many inodes, and where the file system keeps no flags. Each listed inode is an
``inode-flag`` fact for the rules (``immutable-persistence``, ``immutable-binary``,
``immutable-config``)."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .findings import apply_rules, rules_of, summarize, window_start
from .homes import user_homes
from .inodeflags import APPEND, IMMUTABLE, ROUTINE, UNSUPPORTED, Budget, Full, letters, sweep
from .inodeflags import set_letters as flag_letters
from .persistence import TREES
from .persistkinds import HOME_OTHER, HOME_STARTUP, PAM_DIRS, kind_of
from .smalltrees import host_path, write_row
from .textview import json_bytes, plural
from .triagegate import triage_settings

FLAGGED = "artifacts/fileflags/flagged.jsonl"
SUMMARY = "artifacts/fileflags/summary.json"
MAX_ENTRIES = 100_000  # the standard set is ~2,000 inodes; the wide one ~80,000
BINARIES = (b"bin", b"sbin", b"usr/bin", b"usr/sbin", b"usr/local/bin", b"usr/local/sbin",
            b"usr/libexec", b"boot")  # fmt: skip
WIDE = (b"usr/lib", b"usr/lib64", b"usr/lib32", b"usr/local", b"opt", b"srv", b"var/www")
_BINARY = tuple("/" + os.fsdecode(b) + "/" for b in BINARIES)
HOME_DIRS = (b".ssh", b".config/autostart", b".config/systemd", b".local/share/systemd")


def area_of(host: str) -> str:
    """Which part of the system a host path is in, for the rules: ``binary`` (programs,
    PAM modules, /boot), ``config`` (the rest of /etc), ``home``, ``library`` (the wide
    sweep's trees), ``persistence`` (the other persistence trees)."""
    if host.startswith(_BINARY) or "/security/" in host:
        return "binary"
    if host.startswith("/etc/"):
        return "config"
    if host.startswith(("/home/", "/root/")):
        return "home"
    if host.startswith(tuple("/" + os.fsdecode(w) + "/" for w in WIDE)):
        return "library"
    return "persistence"


class FileFlagsCollector(Collector):
    name: ClassVar[str] = "fileflags"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 41  # right after persistence, over the same trees
    description: ClassVar[str] = "immutable, append-only flags (lsattr) of config, persistence"
    root: bytes = b"/"  # tests point it at a tree

    def tops(self, wide: bool) -> list[bytes]:
        """The trees to sweep, each once: a tree inside another listed one is dropped."""
        rels = [*TREES, *BINARIES, *PAM_DIRS, *(WIDE if wide else ())]
        paths = [os.path.join(self.root, r) for r in rels]
        for home, _user in user_homes(self.root):
            if wide:
                paths.append(home)
                continue
            paths += [os.path.join(home, r) for r in HOME_STARTUP]
            paths += [os.path.join(home, r) for r, _kind in HOME_OTHER]
            paths += [os.path.join(home, r) for r in HOME_DIRS]
        kept: list[bytes] = []
        for path in sorted(p for p in set(paths) if os.path.lexists(p)):
            if not any(path.startswith(k + b"/") for k in kept):
                kept.append(path)
        return kept

    def collect(self, ctx: CollectContext) -> None:
        settings = triage_settings(ctx, self.name, "Inode flags")
        if settings is None:
            return
        window = window_start(ctx, settings.detection_window_days)
        tops = self.tops(settings.inode_flags_wide)
        budget = Budget(MAX_ENTRIES)
        read = flagged = 0
        unsupported: dict[str, int] = {}
        denied: dict[str, int] = {}
        with ctx.engine.open_stream(FLAGGED, self.name, kind="inode-flags") as out:
            try:
                for top in tops:
                    for item in sweep(top, budget):
                        host = host_path(self.root, item.path)
                        if item.error is not None:
                            self._failed(ctx, item.path, item.error, host, unsupported, denied)
                            continue
                        read += 1
                        assert item.st is not None and item.flags is not None
                        if not item.flags & ~ROUTINE:
                            continue
                        flagged += 1
                        fact = self._fact(host, item.st, item.flags)
                        write_row(out, {**fact, "lsattr": letters(item.flags),
                                        "mode": oct(item.st.st_mode), "uid": item.st.st_uid,
                                        "size": item.st.st_size})  # fmt: skip
                        apply_rules(ctx, self.name, "inode-flag", fact, item.path, FLAGGED, window)
            except Full:
                ctx.engine.record_skip(
                    self.name, self.root, f"more than {MAX_ENTRIES} inodes: the rest not read"
                )
        summary = {
            "trees": [host_path(self.root, t) for t in tops], "inodes_read": read,
            "flagged": flagged, "wide": settings.inode_flags_wide,
            "no_flags_kept": unsupported, "permission_denied": denied,
        }  # fmt: skip
        ctx.engine.store_bytes(SUMMARY, json_bytes(summary), self.name, kind="inode-flags-summary")
        for where, count in sorted(unsupported.items()):
            ctx.engine.record_skip(
                self.name, os.fsencode(where),
                "the file system keeps no inode flags (FS_IOC_GETFLAGS not supported)",
                inodes=count,
            )  # fmt: skip
        for where, count in sorted(denied.items()):
            ctx.error(self.name, "permission denied reading inode flags", os.fsencode(where),
                      inodes=count)  # fmt: skip
        ctx.summary.add(
            "Inode flags", f"{plural(read, 'inode')} read, {flagged} with flags set"
            + (f", {sum(unsupported.values())} on file systems without flags" if unsupported
               else ""),
        )  # fmt: skip
        summarize(ctx, self.name, rules_of(ctx).ids("inode-flag"))

    def _failed(
        self, ctx: CollectContext, path: bytes, error: OSError, host: str,
        unsupported: dict[str, int], denied: dict[str, int],
    ) -> None:  # fmt: skip
        """One failure: counted by directory when the file system has no flags or the
        reader has no right (thousands of records would say the same), else recorded."""
        where = os.path.dirname(host) or "/"
        if error.errno in UNSUPPORTED:
            unsupported[where] = unsupported.get(where, 0) + 1
        elif error.errno in (errno.EACCES, errno.EPERM):
            denied[where] = denied.get(where, 0) + 1
        else:
            ctx.error(self.name, f"cannot read inode flags: {error.strerror}", path)

    @staticmethod
    def _fact(host: str, st: os.stat_result, flags: int) -> dict[str, Any]:
        return {
            "path": host, "flags": flag_letters(flags & ~ROUTINE),
            "immutable": bool(flags & IMMUTABLE), "append_only": bool(flags & APPEND),
            "directory": stat.S_ISDIR(st.st_mode), "area": area_of(host),
            "persistence_kind": kind_of(host) or "",
            "changed_ns": max(st.st_mtime_ns, st.st_ctime_ns),
        }  # fmt: skip
