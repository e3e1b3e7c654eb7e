"""``procfiles``: every process's memory maps and complete descriptor table, and the
content of files that are deleted but still held open.

Outputs (under ``artifacts/volatile/``), one artifact each, not one record a process:

- ``maps.jsonl``: ``{"pid", "maps": [line, ...]}`` a process, the lines as the kernel
  wrote them (compact: no re-encoding of addresses);
- ``fds.jsonl``: ``{"pid", "fds": [{"fd", "target", "kind", "pos", "flags", "access",
  "mnt_id", "ino", "extra"}...]}``: files, sockets, pipes, anonymous inodes (eventfd,
  bpf-prog, inotify...), memfds, namespaces, with what ``fdinfo`` says of each;
- ``deleted-open/<pid>-<fd>-<name>``: a deleted-but-open file (an exfiltration archive, a
  wiped log) or a memfd, copied through ``/proc/PID/fd/N`` by the copy engine, each
  distinct file once, at most ``FILE_CAP`` bytes of it and ``TOTAL_CAP`` in all (past a
  cap: the first bytes are kept and the record says ``capped``; past the total: recorded,
  not copied).

A deleted file held open is a MEDIUM finding (``deleted-open-file``); an executable
mapping of a library from a world-writable directory, a deleted library or a memfd is a
HIGH ``injected-library`` finding and a red flag the ``procmem`` collector acts on
(``ctx.shared[INJECTED]``). Runs right after ``processes``, whose PIDs (every view's,
hidden ones included) it reads.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any, ClassVar

from . import fdtable, rawsys
from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .findings import record_finding, summarize
from .textview import jsonl, printable

OUT = "artifacts/volatile"
FILE_CAP = 256 * 1024 * 1024  # bytes kept of one deleted-but-open file or memfd
TOTAL_CAP = 1024 * 1024 * 1024  # bytes of such files in one run
INJECTED = "injected_libraries"  # ctx.shared: pid -> [mapped path]
FD_TABLE = "fd_table"  # ctx.shared: pid -> [fd entry], for later collectors (kernel)
RULES = {"deleted-open-file", "injected-library"}


def pids_of(ctx: CollectContext) -> list[int]:
    """The processes ``processes`` found through all its views, or the kernel's own
    listing of ``/proc`` when it did not run."""
    index = ctx.shared.get("process_index")
    if index:
        return sorted(index)
    return sorted(int(n) for n in rawsys.getdents("/proc") if n.isdigit())


def _exe(ctx: CollectContext, pid: int) -> str | None:
    proc = ctx.shared.get("process_index", {}).get(pid) or {}
    exe = proc.get("exe")
    if isinstance(exe, str):
        return exe.removesuffix(" (deleted)")
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(text.removesuffix(" (deleted)")))[:40]


class ProcFilesCollector(Collector):
    name: ClassVar[str] = "procfiles"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 11  # right after processes: the same moment, its PIDs
    description: ClassVar[str] = "memory maps, descriptor tables, deleted-but-open files"

    def collect(self, ctx: CollectContext) -> None:
        if not LINUX:
            ctx.engine.record_skip(self.name, b"/proc", "maps and descriptors need /proc")
            return
        maps_rows: list[dict[str, Any]] = []
        fd_rows: list[dict[str, Any]] = []
        table: dict[int, list[dict[str, Any]]] = {}
        injected: dict[int, list[str]] = {}
        unreadable: dict[str, list[int]] = {}
        held: list[tuple[int, dict[str, Any]]] = []
        for pid in pids_of(ctx):
            try:
                maps = fdtable.read_maps(pid)
                maps_rows.append({"pid": pid, "maps": [m.line for m in maps]})
                libs = fdtable.injected(maps, _exe(ctx, pid))
                if libs:
                    injected[pid] = libs
            except OSError as e:
                unreadable.setdefault(f"maps: {e.strerror}", []).append(pid)
            try:
                fds, cut = fdtable.read_fds(pid)
            except OSError as e:
                unreadable.setdefault(f"fds: {e.strerror}", []).append(pid)
                continue
            table[pid] = fds
            fd_rows.append({"pid": pid, "fds": fds, **({"cut_at": fdtable.MAX_FDS} if cut else {})})
            held += [(pid, f) for f in fds if f["kind"] in ("deleted", "memfd")]
        ctx.shared[FD_TABLE] = table
        ctx.shared[INJECTED] = injected
        ctx.engine.store_bytes(f"{OUT}/maps.jsonl", jsonl(maps_rows), self.name, kind="maps")
        ctx.engine.store_bytes(f"{OUT}/fds.jsonl", jsonl(fd_rows), self.name, kind="fd-table")
        if unreadable:
            ctx.journal.append(
                "event", event="procfiles-unreadable", collector=self.name,
                unreadable={k: v[:200] for k, v in unreadable.items()},
            )  # fmt: skip
        for pid, libs in injected.items():
            record_finding(
                ctx, self.name, "injected-library", "HIGH", f"/proc/{pid}/maps".encode(),
                f"pid {pid} runs code from {', '.join(printable(x) for x in libs[:3])}",
                artifact=f"{OUT}/maps.jsonl", pid=pid, mapped=[printable(x) for x in libs[:20]],
            )  # fmt: skip
        copied = self._held_files(ctx, held)
        ctx.summary.add(
            "Descriptors",
            f"{sum(len(v) for v in table.values())} fds of {len(table)} processes; "
            f"{copied} deleted-but-open file(s) or memfd(s) preserved",
        )
        summarize(ctx, self.name, RULES)
        ctx.engine.drain()

    def _held_files(self, ctx: CollectContext, held: list[tuple[int, dict[str, Any]]]) -> int:
        """Copy each distinct deleted-but-open file and memfd once, within the caps."""
        seen: set[tuple[int, int]] = set()
        left = TOTAL_CAP
        copied = 0
        for pid, entry in held:
            source = f"/proc/{pid}/fd/{entry['fd']}".encode()
            try:
                st = os.stat(source)
            except OSError:
                continue  # closed since it was listed
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            target = entry["target"]
            rel = f"{OUT}/deleted-open/{pid}-{entry['fd']}-{_safe(target)}"
            about = {"pid": pid, "fd": entry["fd"], "target": printable(target)}
            if entry["kind"] == "deleted" and st.st_nlink == 0:
                record_finding(
                    ctx, self.name, "deleted-open-file", "MEDIUM", target.encode(),
                    f"pid {pid} holds {printable(target)} open ({st.st_size} bytes)",
                    artifact=rel if left > 0 else None, **about,
                )  # fmt: skip
            if left <= 0:
                ctx.engine.record_skip(
                    self.name, source, f"over the {TOTAL_CAP}-byte total for held files", **about
                )
                continue
            keep = min(FILE_CAP, left)
            record = ctx.engine.preserve(
                source, rel, self.name, magic_link=True,
                limit=keep if st.st_size > keep else None,
                kind="deleted-open" if entry["kind"] == "deleted" else "memfd",
                capped=st.st_size > keep, **about,
            )  # fmt: skip
            if record:
                copied += 1
                left -= int(record["size"])
        return copied
