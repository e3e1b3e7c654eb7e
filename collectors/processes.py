"""``processes``: every process, its executable's hash, its sockets and its red flags.

Outputs (all under ``artifacts/volatile/``):

- ``processes.jsonl``: one JSON object per process, sorted by pid;
- ``processes.txt``: a ``ps``-like table, red flags first;
- ``deleted-exe/<pid>-<name>``: the binary of each process whose executable was deleted
  from disk, copied through ``/proc/PID/exe`` (bounded by ``EXE_COPY_LIMIT``).

Executables are hashed through ``/proc/PID/exe`` rather than the path, so the hash is of
what runs even if the file on disk is gone or was swapped; each distinct file (device,
inode) is read once.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from typing import Any, ClassVar

from . import redflags, snapshot
from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .textview import jsonl, printable, table

OUT = "artifacts/volatile"
EXE_COPY_LIMIT = 256 * 1024 * 1024  # larger deleted binaries are hashed, not copied
EXE_HASH_LIMIT = 1024 * 1024 * 1024
MAX_PARENTS = 64
MAX_LISTED = 200  # pids named in one journal record


def _hash_fd(fd: int, limit: int) -> tuple[str, int]:
    h = hashlib.sha256()
    done = 0
    while done < limit:
        chunk = os.read(fd, min(1 << 20, limit - done))
        if not chunk:
            break
        h.update(chunk)
        done += len(chunk)
    return h.hexdigest(), done


def hash_executable(pid: int) -> dict[str, Any]:
    """SHA-256 of what ``pid`` runs, read through the kernel's link to it."""
    fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return {"error": "not a regular file"}
        if st.st_size > EXE_HASH_LIMIT:
            return {"error": f"larger than {EXE_HASH_LIMIT} bytes: not hashed", "size": st.st_size}
        digest, size = _hash_fd(fd, EXE_HASH_LIMIT)
        return {"sha256": digest, "size": size, "dev": str(st.st_dev), "ino": str(st.st_ino)}
    finally:
        os.close(fd)


def _parents(pid: int, ppids: dict[int, int | None]) -> list[int]:
    chain: list[int] = []
    seen = {pid}
    current = ppids.get(pid)
    while current and current not in seen and len(chain) < MAX_PARENTS:
        chain.append(current)
        seen.add(current)
        current = ppids.get(current)
    return chain


def _socket_ref(s: dict[str, Any]) -> dict[str, Any]:
    return {
        k: s[k] for k in ("proto", "family", "laddr", "lport", "raddr", "rport", "status", "fd")
    }


def _safe_name(name: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(name or "unknown"))[:40]


class ProcessesCollector(Collector):
    name: ClassVar[str] = "processes"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 10
    default: ClassVar[bool] = True
    description: ClassVar[str] = "process table, executable hashes, red flags (taken with sockets)"

    def collect(self, ctx: CollectContext) -> None:
        snap = snapshot.take(ctx)
        if not LINUX:
            ctx.engine.record_skip(
                self.name,
                b"/proc",
                "executable hashes, deleted-binary copies and red flags need /proc "
                f"(Linux only; this is {sys.platform})",
            )
        procs = snap.processes or []
        by_pid_sockets: dict[int, list[dict[str, Any]]] = {}
        for s in snap.sockets:
            if s["pid"] is not None:
                by_pid_sockets.setdefault(s["pid"], []).append(s)
        ppids = {p["pid"]: p.get("ppid") for p in procs}
        hashes: dict[tuple[str, str], dict[str, Any]] = {}
        copied: dict[tuple[str, str], dict[str, Any]] = {}
        index: dict[int, dict[str, Any]] = {}
        for proc in procs:
            pid = proc["pid"]
            sockets = by_pid_sockets.get(pid, [])
            proc["sockets"] = [_socket_ref(s) for s in sockets]
            proc["parents"] = _parents(pid, ppids)
            link = snap.exe_links.get(pid)
            exe, deleted = redflags.exe_text(link)
            proc["exe_deleted"] = deleted
            if link is not None and not proc.get("vanished"):
                proc["executable"] = self._executable(ctx, pid, proc, deleted, hashes, copied)
            listening = any(s["status"] == "LISTEN" for s in sockets)
            if pid == os.getpid():  # this run: a kit runs its loader from wherever it sits
                proc["this_run"] = True
                proc["flags"] = []
            else:
                proc["flags"] = redflags.flags_for(proc, link, listening)
            index[pid] = proc
        if snap.survey is not None:  # Linux: what the views disagreed on (crossfindings.py)
            from . import crossfindings

            crossfindings.judge(ctx, self.name, snap.survey, snap, procs)
            index.update((p["pid"], p) for p in procs)
        if LINUX:  # what the host's loader put into this very process (loaderview.py)
            from . import loaderview
            from .selfexec import frozen_kit_dir

            loaderview.judge(ctx, self.name, frozen_kit_dir())
        ctx.shared["process_index"] = index
        procs.sort(key=lambda p: p["pid"])
        ctx.engine.store_bytes(
            f"{OUT}/processes.jsonl", jsonl(procs), self.name, kind="process-table"
        )
        ctx.engine.store_bytes(
            f"{OUT}/processes.txt", self._text(procs, snap).encode(), self.name, kind="process-view"
        )
        self._journal_findings(ctx, procs, snap, len(hashes))

    def _executable(
        self,
        ctx: CollectContext,
        pid: int,
        proc: dict[str, Any],
        deleted: bool,
        hashes: dict[tuple[str, str], dict[str, Any]],
        copied: dict[tuple[str, str], dict[str, Any]],
    ) -> dict[str, Any]:
        try:
            st = os.stat(f"/proc/{pid}/exe")
        except PermissionError:
            return {"error": "access denied"}
        except OSError as e:
            return {"error": e.strerror or str(e)}
        key = (str(st.st_dev), str(st.st_ino))
        if deleted and key not in copied:
            copied[key] = self._copy_deleted(ctx, pid, proc, st)
        if key not in hashes:
            if deleted and copied[key].get("sha256"):
                hashes[key] = {"sha256": copied[key]["sha256"], "size": copied[key]["size"]}
            else:
                try:
                    hashes[key] = hash_executable(pid)
                except OSError as e:
                    hashes[key] = {"error": e.strerror or str(e)}
        result = {**hashes[key], "dev": key[0], "ino": key[1]}
        if deleted:
            result["preserved_as"] = copied[key].get("path")
        return result

    def _copy_deleted(
        self, ctx: CollectContext, pid: int, proc: dict[str, Any], st: os.stat_result
    ) -> dict[str, Any]:
        source = f"/proc/{pid}/exe".encode()
        exe = proc.get("exe")
        if st.st_size > EXE_COPY_LIMIT:
            ctx.error(
                self.name,
                f"deleted executable of pid {pid} is {st.st_size} bytes, over the "
                f"{EXE_COPY_LIMIT}-byte copy limit: hashed, not copied",
                source,
                pid=pid,
                exe=printable(exe),
            )
            return {}
        record = ctx.engine.preserve(
            source,
            f"{OUT}/deleted-exe/{pid}-{_safe_name(proc.get('name'))}",
            self.name,
            magic_link=True,
            kind="deleted-executable",
            pid=pid,
            exe=printable(exe),
        )
        return record or {}

    def _journal_findings(
        self, ctx: CollectContext, procs: list[dict[str, Any]], snap: snapshot.Snapshot, n_exe: int
    ) -> None:
        flagged = [
            {
                "pid": p["pid"],
                "name": printable(p.get("name")),
                "flags": [f["flag"] for f in p["flags"]],
            }
            for p in procs
            if p["flags"]
        ]
        ctx.journal.append(
            "event",
            event="process-findings",
            collector=self.name,
            processes=len(procs),
            distinct_executables=n_exe,
            vanished_pids=snap.vanished[:MAX_LISTED],
            zombies=[p["pid"] for p in procs if p.get("status") == "zombie"][:MAX_LISTED],
            flagged=len(flagged),
            flagged_processes=flagged[:MAX_LISTED],
        )
        took_ms = int(snap.timing.get("duration_ns", "0")) // 1_000_000
        ctx.summary.add(
            "Volatile snapshot",
            f"{len(procs)} processes, {len(snap.sockets)} sockets in {took_ms} ms",
        )
        if flagged:
            shown = "; ".join(
                f"pid {f['pid']} {f['name']}: {','.join(f['flags'])}" for f in flagged[:2]
            )
            more = "; ..." if len(flagged) > 2 else ""
            ctx.summary.add(
                "Red flags",
                f"{len(flagged)} process{'es' if len(flagged) != 1 else ''} ({shown}{more}), "
                "listed in artifacts/volatile/processes.txt",
            )
        denied = [p for p in procs if p.get("denied")]
        if denied:
            fields: dict[str, int] = {}
            for p in denied:
                for f in p["denied"]:
                    fields[f] = fields.get(f, 0) + 1
            summary = (
                f"access denied to some fields of {len(denied)} of {len(procs)} processes "
                f"({', '.join(sorted(fields))})"
            )
            details = {
                "denied_fields": fields,
                "denied_pids": [p["pid"] for p in denied][:MAX_LISTED],
            }
            if os.geteuid() != 0:
                # Fixable by the responder: an incomplete snapshot is a failed item (exit 1).
                ctx.error(
                    self.name,
                    f"{summary}; run as root for a complete snapshot",
                    b"/proc",
                    **details,
                )
            else:
                # Refused even to root (protected or sandboxed processes): nothing the
                # responder can do, so it is recorded, not counted as a failure.
                ctx.journal.append(
                    "event",
                    collector=self.name,
                    event="fields-denied-to-root",
                    reason=f"{summary}; the kernel refused them even to root",
                    **details,
                )

    @staticmethod
    def _text(procs: list[dict[str, Any]], snap: snapshot.Snapshot) -> str:
        def row(p: dict[str, Any]) -> list[Any]:
            mem = p.get("memory") or {}
            cmd = p.get("cmdline")
            command = " ".join(cmd) if cmd else f"[{p.get('name') or '?'}]"
            return [
                p["pid"],
                p.get("ppid", ""),
                p.get("username") or (p.get("uids") or ["?"])[0],
                p.get("status") or "?",
                (p.get("create_time") or "")[:19],
                (mem.get("rss") or 0) // 1024,
                p.get("num_threads") or "",
                ",".join(f["flag"] for f in p["flags"]) or "-",
                command,
            ]

        headers = [
            "PID",
            "PPID",
            "USER",
            "STAT",
            "STARTED(UTC)",
            "RSS_KIB",
            "THR",
            "FLAGS",
            "COMMAND",
        ]
        flagged = [p for p in procs if p["flags"]]
        t = snap.timing
        out = [
            f"# process snapshot {t.get('wall_start')} .. {t.get('wall_end')} "
            f"({int(t.get('duration_ns', '0')) // 1_000_000} ms with sockets), "
            f"{len(procs)} processes, {len(snap.vanished)} exited during the snapshot\n"
        ]
        if flagged:
            out.append(f"# red flags ({len(flagged)} processes)\n")
            for p in flagged:
                for f in p["flags"]:
                    out.append(f"#   pid {p['pid']}: {f['flag']}: {printable(f['reason'])}\n")
        out.append(table(headers, [row(p) for p in procs]))
        return "".join(out)
