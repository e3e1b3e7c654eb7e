"""``procmem``: the readable memory of every suspicious process, from ``/proc/PID/mem``.

A process is captured when it carries one of ``CAPTURE_FLAGS`` (set by ``processes``:
hidden from a view, /proc entry overmounted, executable deleted or replaced, running from
a memfd or a world-writable directory) or maps an injected library (``procfiles``). Its
memory is what a fileless implant leaves nowhere else: decrypted configuration, keys,
command buffers.

For each such process, two artifacts under ``artifacts/volatile/memory/``:

- ``<pid>-<name>.mem``: the bytes of every readable mapping, back to back, streamed to
  the drive and hashed on the way (one artifact, one journal record);
- ``<pid>-<name>.maps.json``: the index: ``/proc/PID/maps`` as read, and for each mapping
  where its bytes are in ``.mem`` (``stored_at``, ``stored``) or why they are not
  (``unreadable`` with the errno, as for ``[vvar]``; ``no-read-permission``; ``capped``).

Caps: at most ``--process-memory SIZE`` bytes a process (default ``DEFAULT_CAP``) and four
times that in all; ``--process-memory off`` captures nothing (and says so). Within a
process, anonymous memory (heap, stack, memfds, deleted files) is read first, then
writable file-backed mappings, then read-only ones (whose bytes are also on disk), so a
cap cuts what matters least. The process is read live, not stopped: pages can change
during the read, and the index says when the read began and ended.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, ClassVar

from manifests.clock import utc_from_ns

from . import fdtable, freshproc
from .base import Collector, Stage
from .context import CollectContext, Options
from .procfiles import INJECTED
from .textview import json_bytes, printable

OUT = "artifacts/volatile/memory"
DEFAULT_CAP = 256 * 1024 * 1024  # bytes a process
TOTAL_FACTOR = 4  # the run's total cap is this many per-process caps
CHUNK = 1024 * 1024
CAPTURE_FLAGS = frozenset(
    {
        "hidden_process",
        "proc_overmounted",
        "exe_deleted",
        "exe_replaced",
        "exe_in_memory",
        "exe_in_writable_location",
    }
)


def _priority(m: fdtable.Mapping) -> int:
    if m.anonymous or m.deleted or m.path.startswith("["):
        return 0
    return 1 if "w" in m.perms else 2


def own_session() -> set[int]:
    """This process and its ancestors: the responder's own session (shell, sshd, tmux),
    whose memory holds the responder's secrets (typed passphrases, agent keys), never
    the host's evidence."""
    pids = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def reasons(ctx: CollectContext) -> dict[int, list[str]]:
    """pid -> why its memory is captured (flag names), for every flagged process."""
    out: dict[int, list[str]] = {}
    for pid, proc in ctx.shared.get("process_index", {}).items():
        why = [f["flag"] for f in proc.get("flags") or [] if f.get("flag") in CAPTURE_FLAGS]
        if why:
            out[pid] = why
    for pid in ctx.shared.get(INJECTED, {}):
        out.setdefault(pid, []).append("injected_library")
    return dict(sorted(out.items()))


def _open_host(pid: int) -> tuple[list[fdtable.Mapping], int]:
    maps = fdtable.read_maps(pid)
    return maps, os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)


def _open_fresh(pid: int) -> tuple[list[fdtable.Mapping], int]:
    """Maps and memory through a fresh proc instance: a mount over the host's /proc/PID
    (what ``processes`` found) hides both from ``_open_host``."""
    maps_fd, mem_fd = freshproc.open_files(pid, ["maps", "mem"])
    try:
        with os.fdopen(maps_fd, "rb", closefd=False) as f:
            text = f.read(fdtable.MAX_MAPS_BYTES).decode("utf-8", "backslashreplace")
    except OSError:
        os.close(mem_fd)
        raise
    finally:
        os.close(maps_fd)
    return fdtable.parse_maps(text), mem_fd


class ProcMemCollector(Collector):
    name: ClassVar[str] = "procmem"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 12  # after processes and procfiles, which flag the processes
    description: ClassVar[str] = "memory of flagged processes (--process-memory SIZE|off)"

    def __init__(self) -> None:
        self.cap: int = DEFAULT_CAP

    def configure(self, options: Options) -> None:
        if options.process_memory is not None:
            self.cap = options.process_memory

    @property
    def memory_at_most(self) -> int:
        """The most this run can store of process memory: which processes are flagged is
        known only once ``processes`` has run, so the pre-flight can give only the cap."""
        return self.cap * TOTAL_FACTOR

    def collect(self, ctx: CollectContext) -> None:
        flagged = reasons(ctx)
        if self.cap == 0:
            ctx.journal.append(
                "event", event="process-memory-off", collector=self.name,
                flagged_pids=list(flagged)[:200],
            )  # fmt: skip
            if flagged:
                ctx.summary.add("Process memory", f"off: {len(flagged)} flagged, not captured")
            return
        if "process_index" not in ctx.shared:
            ctx.engine.record_skip(
                self.name, b"/proc", "no process table: run the processes collector too"
            )
            return
        left = self.cap * TOTAL_FACTOR
        done: list[str] = []
        session = own_session()
        for pid, why in flagged.items():
            if pid in session:
                ctx.engine.record_skip(
                    self.name, f"/proc/{pid}/mem".encode(),
                    "the collecting session's own process: its memory holds the responder's "
                    "secrets, not the host's evidence", pid=pid, flags=why,
                )  # fmt: skip
                continue
            if left <= 0:
                ctx.engine.record_skip(
                    self.name, f"/proc/{pid}/mem".encode(),
                    f"over the {self.cap * TOTAL_FACTOR}-byte total for process memory",
                    pid=pid, flags=why,
                )  # fmt: skip
                continue
            stored = self._capture(ctx, pid, why, min(self.cap, left))
            if stored is not None:
                left -= stored
                done.append(f"pid {pid} {stored // 1024} KiB")
        if flagged:
            ctx.summary.add(
                "Process memory",
                f"{len(done)} of {len(flagged)} flagged processes ({'; '.join(done[:3])}"
                f"{'; ...' if len(done) > 3 else ''}), in {OUT}/",
            )

    def _capture(self, ctx: CollectContext, pid: int, why: list[str], cap: int) -> int | None:
        """Store one process's memory and index; returns bytes stored, None on failure."""
        source = f"/proc/{pid}/mem".encode()
        proc = ctx.shared["process_index"].get(pid) or {}
        label = re.sub(r"[^A-Za-z0-9._-]", "_", str(proc.get("name") or "unknown"))[:40]
        fresh = proc.get("read_via") == "fresh-proc"  # /proc/PID is overmounted here
        try:
            maps, fd = _open_fresh(pid) if fresh else _open_host(pid)
        except OSError as e:
            reason = e.strerror or str(e)
            ctx.error(self.name, f"cannot read its memory: {reason}", source, pid=pid)
            return None
        rel = f"{OUT}/{pid}-{label}"
        began = time.time_ns()
        try:
            with ctx.engine.open_stream(
                f"{rel}.mem", self.name, kind="process-memory", pid=pid, flags=why,
                index=f"{rel}.maps.json",
            ) as out:  # fmt: skip
                ranges = self._read(fd, maps, cap, out)
        finally:
            os.close(fd)
        if out.record is None:
            return None  # full drive, stopped run: the stream recorded why
        index = {
            "pid": pid,
            "name": printable(proc.get("name")),
            "exe": printable(proc.get("exe")),
            "flags": why,
            "cap": cap,
            "read_via": "fresh-proc" if fresh else "proc",
            "read_began": utc_from_ns(began),
            "read_ended": utc_from_ns(time.time_ns()),
            "memory": {"path": out.rel, "size": out.size, "sha256": out.record["sha256"]},
            "maps": [m.line for m in maps],
            "ranges": ranges,
        }
        ctx.engine.store_bytes(
            f"{rel}.maps.json", json_bytes(index), self.name, kind="process-memory-index",
            pid=pid, memory=out.rel,
        )  # fmt: skip
        return out.size

    @staticmethod
    def _read(fd: int, maps: list[fdtable.Mapping], cap: int, out: Any) -> list[dict[str, Any]]:
        ranges: list[dict[str, Any]] = []
        at = 0
        for m in sorted(maps, key=_priority):
            entry: dict[str, Any] = {"start": f"{m.start:x}", "end": f"{m.end:x}",
                                     "perms": m.perms, "path": printable(m.path)}  # fmt: skip
            ranges.append(entry)
            if "r" not in m.perms:
                entry["status"] = "no-read-permission"
                continue
            if at >= cap:
                entry["status"] = "capped"
                continue
            entry["stored_at"] = str(at)
            got = 0
            want = min(m.end - m.start, cap - at)
            while got < want:
                try:
                    data = os.pread(fd, min(CHUNK, want - got), m.start + got)
                except OSError as e:
                    entry["error"] = e.strerror or str(e)
                    break
                if not data:
                    break
                out.write(data)
                got += len(data)
            at += got
            entry["stored"] = str(got)
            size = m.end - m.start
            entry["status"] = (
                "unreadable" if got == 0 and "error" in entry
                else "stored" if got == size
                else "capped" if got == want and "error" not in entry
                else "partial"
            )  # fmt: skip
        return sorted(ranges, key=lambda r: int(r["start"], 16))
