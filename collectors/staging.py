"""``staging``: where attackers stage. The contents of the world-writable directories
(``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock``, ``/var/crash``, and any of their
subdirectories anyone may write to) and every script under the web roots, with the
signals that make one a likely web shell (collectors/webshell.py).

World-writable directories: every entry is listed in ``artifacts/staging/listing.jsonl``
(type, size, mode, owner, times; a symlink's target, read, never followed); each regular
file is copied through the copy engine, at most ``staging_max_file_bytes`` of it (the
first bytes: a huge sparse file costs that much and no more) and at most
``staging_max_total_bytes`` in all (profile ``[triage]``); what a cap leaves is listed
with the reason. FIFOs, sockets and devices are listed, never opened.

Web roots: ``artifacts/staging/webroots.jsonl`` has one row per script (``.php``,
``.jsp``, ``.asp(x)``, ``.cgi``, ``.py``, ``.pl``, ...): its SHA-256 (of the whole file),
size, times and signals. The whole file is copied when it was modified in the detection
window (its mtime; the row has its ctime too) or shows a signal. Findings:
``web-shell-likely`` (HIGH) and ``executable-content-in-staging-dir`` (MEDIUM: an ELF
binary or a ``#!`` script in a world-writable directory, whatever its mode)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from . import webshell
from .base import Collector, Stage
from .context import CollectContext
from .findings import record_finding, summarize
from .logprofile import load_profile
from .pathmap import stored_relpath
from .source import open_seen
from .textview import plural
from .walk import Entry, walk_stats

STAGING = (b"tmp", b"var/tmp", b"dev/shm", b"run/lock", b"var/crash")
LISTING = "artifacts/staging/listing.jsonl"
WEBROOTS = "artifacts/staging/webroots.jsonl"
# Listed per top directory; the rest counted in one skipped record (as the executables
# collector's cap): a benchmark's million files left in /dev/shm must not hold the run.
MAX_ENTRIES = 20_000
HEADS = 10_000  # files whose first bytes are read (ELF? script?) in one run
RULES = {"web-shell-likely", "executable-content-in-staging-dir"}
WHY = {
    "web-shell-likely": "a script a web server runs that executes what a request sends is "
    "how intruders keep remote control of a server",
    "executable-content-in-staging-dir": "intruders drop their tools where any account can "
    "write, because that needs no privilege",
}


@dataclass
class Budget:
    per_file: int
    left: int


def _kind(mode: int) -> str:
    return {
        stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
        stat.S_IFSOCK: "socket", stat.S_IFCHR: "char-device", stat.S_IFBLK: "block-device",
    }.get(stat.S_IFMT(mode), "other")  # fmt: skip


def scan(
    path: bytes, seen: os.stat_result, head: int, hash_limit: int = -1
) -> tuple[str | None, bytes] | None:
    """(SHA-256 of the whole file, its first ``head`` bytes), read once, or None when the
    file at ``path`` is no longer the regular file the walk saw. A file larger than
    ``hash_limit`` (-1: do not hash) is not hashed: only its head is read. The whole file
    is the size it had at open: one that an intruder keeps extending (a sparse file
    grows a gigabyte a ``truncate``) would otherwise never reach its end."""
    fd = open_seen(path, seen)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        if not 0 <= size <= hash_limit:
            return None, os.read(fd, head)
        digest, first = hashlib.sha256(), bytearray()
        while size > 0 and (chunk := os.read(fd, min(1 << 20, size))):
            size -= len(chunk)
            digest.update(chunk)
            if len(first) < head:
                first += chunk[: head - len(first)]
        return digest.hexdigest(), bytes(first)
    except OSError:
        return None
    finally:
        os.close(fd)


def row(entry: Entry) -> dict[str, Any]:
    st = entry.stat
    assert st is not None
    out: dict[str, Any] = {
        "path": os.fsdecode(entry.path), "type": _kind(st.st_mode), "size": st.st_size,
        "mode": f"{st.st_mode:o}", "uid": st.st_uid, "gid": st.st_gid,
        "mtime": int(st.st_mtime), "ctime": int(st.st_ctime),
    }  # fmt: skip
    if stat.S_ISLNK(st.st_mode):
        try:
            out["target"] = os.fsdecode(os.readlink(entry.path))
        except OSError:
            out["target"] = None
    return out


class StagingCollector(Collector):
    name: ClassVar[str] = "staging"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 70
    description: ClassVar[str] = "world-writable directories' contents; web roots' scripts"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        triage = (ctx.options.log_profile or load_profile(None)).triage
        budget = Budget(triage.staging_max_file_bytes, triage.staging_max_total_bytes)
        now = (ctx.options.reference_time or time.time_ns()) // 10**9
        self.since = now - triage.detection_window_days * 86400
        out_st = os.stat(ctx.root)
        self.exclude = frozenset({(out_st.st_dev, out_st.st_ino)})
        self.heads = 0
        listed = scripts = 0
        with ctx.engine.open_stream(LISTING, self.name, kind="staging-listing") as out:
            for top in self.staging_dirs():
                listed += self._staging(ctx, top, out, budget)
        with ctx.engine.open_stream(WEBROOTS, self.name, kind="webroot-scripts") as out:
            for top, named_by in self.web_roots():
                scripts += self._web_root(ctx, top, named_by, out, budget)
        ctx.engine.drain()
        ctx.summary.add(
            "Staging",
            f"{plural(listed, 'entry', 'entries')} in world-writable directories, "
            f"{plural(scripts, 'web script')}",
        )
        summarize(ctx, self.name, RULES)

    def staging_dirs(self) -> list[bytes]:
        found: list[bytes] = []
        for d in STAGING:
            path = os.path.join(self.root, d)
            real = os.path.realpath(path)  # /var/lock -> /run/lock: once
            try:
                st = os.stat(real)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o002 and real not in found:
                found.append(real)
        return found

    def web_roots(self) -> list[tuple[bytes, str | None]]:
        found: dict[bytes, str | None] = {}
        for d in webshell.WEB_ROOTS:
            found.setdefault(os.path.join(self.root, d), None)
        for docroot, conf in webshell.config_roots(self.root):
            path = os.path.join(self.root, docroot.lstrip(b"/"))
            found.setdefault(path, os.fsdecode(conf))
        roots = [(p, c) for p, c in found.items() if os.path.isdir(p) and not os.path.islink(p)]
        # a root inside another one is walked with it
        return [
            (p, c) for p, c in roots
            if not any(p != q and p.startswith(q.rstrip(b"/") + b"/") for q, _ in roots)
        ]  # fmt: skip

    def _walk(self, ctx: CollectContext, top: bytes) -> Any:
        def on_error(path: bytes, error: OSError) -> None:
            if error.errno == errno.ENOENT:  # /tmp churns: removed between listing and entry
                ctx.engine.record_skip(self.name, path, "removed while it was being listed")
            else:
                ctx.error(self.name, f"cannot list: {error.strerror}", path)

        count = 0
        for entry in walk_stats(top, on_error, exclude=self.exclude):
            if entry.stat is None or entry.is_dir:
                continue
            count += 1
            if count > MAX_ENTRIES:
                ctx.engine.record_skip(
                    self.name, top, f"more than {MAX_ENTRIES} entries: the rest not listed"
                )
                return
            yield entry

    def _copy(self, ctx: CollectContext, entry: Entry, r: dict[str, Any], budget: Budget) -> None:
        """Copy a regular file within the caps; say in its row what was copied."""
        assert entry.stat is not None
        take = min(entry.stat.st_size, budget.per_file)
        if take > budget.left:
            r["copied"], r["not_copied"] = 0, "the run's staging_max_total_bytes cap was reached"
            return
        budget.left -= take
        r["copied"] = take
        if take < entry.stat.st_size:
            r["not_copied"] = f"beyond the first {budget.per_file} bytes (staging_max_file_bytes)"
        rel = f"artifacts/staging/files/{stored_relpath(entry.path)}"
        # Always bounded by what the walk saw: a file extended since (a sparse one can
        # grow a terabyte a second) would otherwise be copied at its size at open.
        ctx.engine.submit(entry.path, rel, self.name, parent_id=entry.parent, limit=take)

    def _staging(self, ctx: CollectContext, top: bytes, out: Any, budget: Budget) -> int:
        count = 0
        for entry in self._walk(ctx, top):
            assert entry.stat is not None
            r = row(entry)
            if stat.S_ISREG(entry.stat.st_mode):
                self._copy(ctx, entry, r, budget)
                self._judge_staged(ctx, entry, r)
            out.write(json.dumps(r, sort_keys=True).encode() + b"\n")
            count += 1
        return count

    def _judge_staged(self, ctx: CollectContext, entry: Entry, r: dict[str, Any]) -> None:
        assert entry.stat is not None
        if entry.stat.st_size < 4:
            return
        self.heads += 1
        if self.heads > HEADS:
            r["not_examined"] = f"more than {HEADS} files: first bytes not read"
            return
        got = scan(entry.path, entry.stat, 4)
        if got is None or not got[1].startswith((b"\x7fELF", b"#!")):
            return
        what = "an ELF executable" if got[1].startswith(b"\x7fELF") else "a script"
        record_finding(
            ctx, self.name, "executable-content-in-staging-dir", "MEDIUM", entry.path,
            f"{r['path']} is {what} in a world-writable directory",
            LISTING, why=WHY["executable-content-in-staging-dir"],
        )  # fmt: skip

    def _web_root(
        self, ctx: CollectContext, top: bytes, named_by: str | None, out: Any, budget: Budget
    ) -> int:
        count = 0
        listing: dict[bytes, list[bytes]] = {}
        for entry in self._walk(ctx, top):
            assert entry.stat is not None
            if not stat.S_ISREG(entry.stat.st_mode) or not webshell.is_script(entry.path):
                continue
            directory, name = os.path.split(entry.path)
            if directory not in listing:
                try:
                    listing = {directory: os.listdir(directory)}  # one directory at a time
                except OSError:
                    listing = {directory: []}
            count += 1
            self._script(ctx, entry, name, listing[directory], top, named_by, out, budget)
        return count

    def _script(
        self, ctx: CollectContext, entry: Entry, name: bytes, neighbours: list[bytes],
        top: bytes, named_by: str | None, out: Any, budget: Budget,
    ) -> None:  # fmt: skip
        assert entry.stat is not None
        r = row(entry)
        r["web_root"], r["named_by"] = os.fsdecode(top), named_by
        got = scan(entry.path, entry.stat, webshell.SCAN_BYTES, budget.per_file)
        r["sha256"] = got[0] if got else None
        if got and got[0] is None:
            r["not_hashed"] = f"larger than {budget.per_file} bytes (staging_max_file_bytes)"
        r["signals"] = webshell.signals(got[1], name, neighbours) if got else []
        recent = entry.stat.st_mtime >= self.since  # as touch -d sets it; the row has ctime
        if r["signals"] or recent:
            r["why_copied"] = "signals" if r["signals"] else "changed in the detection window"
            self._copy(ctx, entry, r, budget)
        out.write(json.dumps(r, sort_keys=True).encode() + b"\n")
        if webshell.likely_web_shell(r["signals"]):
            record_finding(
                ctx, self.name, "web-shell-likely", "HIGH", entry.path,
                f"{r['path']} looks like a web shell ({', '.join(r['signals'])})",
                f"artifacts/staging/files/{stored_relpath(entry.path)}" if r.get("copied")
                else WEBROOTS,
                why=WHY["web-shell-likely"], sha256=r["sha256"], signals=r["signals"],
            )  # fmt: skip
