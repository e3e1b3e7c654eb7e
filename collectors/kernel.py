"""``kernel``: what the kernel says about itself, through more than one view each.

- modules: ``/proc/modules`` against ``/sys/module`` (loadable entries only), and the raw
  read of ``/proc/modules`` against libc's (collectors/kmodules.py);
- taint: ``/proc/sys/kernel/tainted`` decoded into words, and checked against the taint
  letters the listed modules carry;
- eBPF: every program and link the ``bpf`` syscall's ID walk lists (collectors/bpf.py),
  with attach points, against the programs and links processes hold descriptors to;
- ``/etc/ld.so.preload``: read through bare ``openat``/``read`` and through libc.

Stored as ``artifacts/volatile/kernel.json`` (plus ``kernel-preload-file.raw`` when that
file has content). Each disagreement is a finding (HIGH: a hidden module, a hidden eBPF
object, a hidden preload file) and a ``degraded`` event; a view that cannot be read is a
``degraded`` event (MEDIUM). What each view costs, and what a kernel rootkit can still
hide from all of them, is in docs/threat-model.md.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any, ClassVar

from . import bpf, fdtable, kmodules, rawsys
from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .degraded import HIGH, MEDIUM, degrade
from .findings import record_finding, summarize
from .procfiles import FD_TABLE, pids_of
from .textview import json_bytes

OUT = "artifacts/volatile/kernel.json"
PRELOAD = b"/etc/ld.so.preload"
# Named so that no hook filtering "ld.so.preload" by name can stop it being written.
PRELOAD_OUT = "artifacts/volatile/kernel-preload-file.raw"
PRELOAD_LIMIT = 1024 * 1024
# Program types that can read (or, with bpf_probe_write_user and bpf_override_return,
# change) kernel and process memory, or see and drop packets before any socket does:
# the types eBPF rootkits and backdoors use. LOW: monitoring agents use them too.
WATCHED_TYPES = frozenset(
    bpf.words(
        "kprobe tracepoint perf_event raw_tracepoint raw_tracepoint_writable tracing lsm ext "
        "xdp sched_cls sched_act socket_filter"
    )
)
RULES = {
    "module-hidden", "module-hidden-from-libc", "kernel-tainted", "taint-without-module",
    "ebpf-hidden", "ebpf-program", "ld-so-preload", "ld-so-preload-hidden",
}  # fmt: skip
_KIND = {
    "anon_inode:bpf-prog": ("programs", "prog_id"),
    "anon_inode:bpf_link": ("links", "link_id"),
}


def _bpf_fds(pid: int) -> list[dict[str, Any]]:
    """``pid``'s descriptors to eBPF programs and links, with their fdinfo. Raises OSError."""
    return [
        {"fd": int(n), "target": t, **_fdinfo(pid, n)}
        for n in os.listdir(f"/proc/{pid}/fd")
        for t in [_link(pid, n)]
        if t in _KIND
    ]


def _object_ids(entries: list[dict[str, Any]], kind: str) -> list[int]:
    """The ids of the ``kind`` objects (programs, links) these descriptors point to."""
    ids = []
    for entry in entries:
        known = _KIND.get(entry.get("target", ""))
        value = (entry.get("extra") or {}).get(known[1], "") if known and known[0] == kind else ""
        if value.isdigit():
            ids.append(int(value))
    return ids


def bpf_holders(ctx: CollectContext) -> dict[str, dict[int, list[int]]]:
    """programs/links -> object id -> pids holding a descriptor to it, from fdinfo (the
    ``procfiles`` table when it ran, else a scan of descriptors of that kind only)."""
    table = ctx.shared.get(FD_TABLE)
    if table is None:
        table = {}
        for pid in pids_of(ctx):
            try:
                table[pid] = _bpf_fds(pid)
            except OSError:
                continue
    held: dict[str, dict[int, list[int]]] = {"programs": {}, "links": {}}
    for pid, fds in table.items():
        for kind, ids in held.items():
            for obj_id in _object_ids(fds, kind):
                ids.setdefault(obj_id, []).append(pid)
    return held


def _held_now(pid: int, kind: str) -> set[int]:
    """The ids of ``kind`` that ``pid`` holds descriptors to, read again now."""
    try:
        return set(_object_ids(_bpf_fds(pid), kind))
    except OSError:
        return set()


def _link(pid: int, n: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{n}")
    except OSError:
        return ""


def _fdinfo(pid: int, n: str) -> dict[str, Any]:
    try:
        with open(f"/proc/{pid}/fdinfo/{n}", "rb") as f:
            return fdtable.parse_fdinfo(f.read(65536).decode("utf-8", "backslashreplace"))
    except OSError:
        return {}


class KernelCollector(Collector):
    name: ClassVar[str] = "kernel"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 25
    description: ClassVar[str] = "modules (two views), taint, eBPF programs, ld.so.preload"

    def collect(self, ctx: CollectContext) -> None:
        if not LINUX:
            ctx.engine.record_skip(self.name, b"/proc", "kernel views are Linux only")
            return
        data: dict[str, Any] = {"syscall_path": "direct" if rawsys.KERNEL_DIRECT else "libc"}
        took: dict[str, str] = {}
        for view, step in (
            ("modules", self._modules),
            ("taint", self._taint),
            ("ebpf", self._ebpf),
            ("ld_so_preload", self._preload),
        ):
            began = time.monotonic_ns()
            step(ctx, data)
            took[view] = str(time.monotonic_ns() - began)
        data["duration_ns"] = took
        ctx.engine.store_bytes(OUT, json_bytes(data), self.name, kind="kernel-views")
        ebpf = data.get("ebpf") or {}
        mods = data.get("modules") or {}
        listed = mods.get("proc_modules")
        ctx.summary.add(
            "Kernel",
            (f"{len(listed)} modules" if listed is not None else "no loadable modules") + ", taint "
            f"{(data.get('taint') or {}).get('value', '?')}, "
            f"{len(ebpf.get('programs', []))} eBPF programs, "
            f"{len(ebpf.get('links', []))} links",
        )
        summarize(ctx, self.name, RULES)

    def _hidden(
        self, ctx: CollectContext, rule: str, view: str, path: bytes, msg: str, **kw: Any
    ) -> None:  # noqa: E501
        record_finding(ctx, self.name, rule, "HIGH", path, msg, artifact=OUT, **kw)
        degrade(ctx, self.name, view, HIGH, msg, **kw)

    def _modules(self, ctx: CollectContext, data: dict[str, Any]) -> None:
        views = kmodules.survey()
        data["modules"] = views.to_json()
        data["modules"]["loadable_support"] = views.proc is not None
        for view, why in views.unreadable.items():
            degrade(ctx, self.name, f"kernel-{view}", MEDIUM, f"cannot read {view}: {why}")
        for name in views.hidden_from_proc:
            where = "" if views.proc is not None else " (this kernel shows no /proc/modules)"
            self._hidden(
                ctx, "module-hidden", "kernel-modules", f"/sys/module/{name}".encode(),
                f"kernel module {name} is in /sys/module but not in /proc/modules{where}",
                module=name, sysfs=views.sys.get(name),
            )  # fmt: skip
        for name in views.hidden_from_sys:
            self._hidden(
                ctx, "module-hidden", "kernel-modules", kmodules.PROC_MODULES.encode(),
                f"kernel module {name} is in /proc/modules but has no /sys/module entry",
                module=name,
            )  # fmt: skip
        if views.hidden_from_libc:
            self._hidden(
                ctx, "module-hidden-from-libc", "kernel-modules-libc",
                kmodules.PROC_MODULES.encode(),
                f"libc's read of /proc/modules hides {', '.join(views.hidden_from_libc[:5])} "
                "that the kernel lists: a library in this process filters what it reads",
                modules=views.hidden_from_libc[:50],
            )  # fmt: skip
        ctx.shared["kernel_module_views"] = views

    def _taint(self, ctx: CollectContext, data: dict[str, Any]) -> None:
        try:
            taint = kmodules.taint()
        except OSError as e:
            degrade(ctx, self.name, "kernel-taint", MEDIUM, f"cannot read taint: {e.strerror}")
            return
        data["taint"] = taint
        value = taint["value"]
        if not value:
            return
        letters = "".join(f["letter"] for f in taint["flags"])
        words = "; ".join(f"{f['letter']}: {f['meaning']}" for f in taint["flags"])
        from_modules = any(f["letter"] in kmodules.MODULE_TAINTS for f in taint["flags"])
        record_finding(
            ctx, self.name, "kernel-tainted", "MEDIUM" if from_modules else "LOW",
            kmodules.TAINTED.encode(), f"kernel tainted {value} ({letters}): {words}",
            artifact=OUT, taint=taint,
        )  # fmt: skip
        views = ctx.shared.get("kernel_module_views")
        orphans = kmodules.orphan_taints(value, views) if views and not views.unreadable else []
        data["taint"]["letters_without_module"] = orphans
        if orphans:
            record_finding(
                ctx, self.name, "taint-without-module", "MEDIUM", kmodules.TAINTED.encode(),
                f"the kernel is tainted {''.join(orphans)} by a module, but no listed module "
                "carries that taint: it was unloaded since, or it is hidden",
                artifact=OUT, letters=orphans,
            )  # fmt: skip

    def _ebpf(self, ctx: CollectContext, data: dict[str, Any]) -> None:
        inv = bpf.inventory()
        holders = bpf_holders(ctx)
        data["ebpf"] = {**inv.to_json(), "held_by": {
            k: {str(i): p for i, p in sorted(v.items())} for k, v in holders.items()}}  # fmt: skip
        for view, why in inv.unreadable.items():
            degrade(ctx, self.name, f"ebpf-{view}", MEDIUM, f"cannot list eBPF {view}: {why}")
        if inv.refused:
            degrade(
                ctx, self.name, "ebpf-objects", MEDIUM,
                f"the kernel listed {len(inv.refused)} eBPF object(s) but refused to describe "
                f"them ({', '.join(sorted({r['error'] for r in inv.refused}))})",
                refused=inv.refused[:50],
            )  # fmt: skip
        if inv.unreadable:
            return  # an incomplete walk cannot show what is missing from it
        listed = {
            "programs": {p["id"] for p in inv.programs},
            "links": {lk["id"] for lk in inv.links},
        }
        refused = {(r["kind"], r["id"]) for r in inv.refused}
        again: bpf.Inventory | None = None
        for kind, held in holders.items():
            for obj_id, pids in sorted(held.items()):
                if obj_id in listed[kind] or (kind, obj_id) in refused:
                    continue
                again = again or bpf.inventory()  # once: loaded after the first walk?
                if obj_id in {o["id"] for o in getattr(again, kind)}:
                    continue
                pids = [p for p in pids if obj_id in _held_now(p, kind)]
                if not pids:
                    continue  # released (and freed) since the descriptors were read
                self._hidden(
                    ctx, "ebpf-hidden", "ebpf", f"/proc/{pids[0]}/fdinfo".encode(),
                    f"eBPF {kind[:-1]} {obj_id} is held by pid(s) {', '.join(map(str, pids[:5]))}"
                    " but missing from the kernel's ID walk",
                    kind=kind[:-1], id=obj_id, pids=pids[:50],
                )  # fmt: skip
        attached = {lk["prog_id"]: lk for lk in inv.links}
        for prog in inv.programs:
            if prog["type"] not in WATCHED_TYPES:
                continue
            link = attached.get(prog["id"])
            where = (
                f" attached by link {link['id']} ({link['type']} {link.get('target', '')})"
                if link
                else ""
            )  # noqa: E501
            record_finding(
                ctx, self.name, "ebpf-program", "LOW", f"bpf:prog/{prog['id']}".encode(),
                f"eBPF {prog['type']} program {prog['id']} {prog['name']!r}{where}",
                artifact=OUT, program=prog, held_by=holders["programs"].get(prog["id"], [])[:20],
            )  # fmt: skip

    def _preload(self, ctx: CollectContext, data: dict[str, Any]) -> None:
        raw: bytes | None = None
        try:
            raw = rawsys.read_file(PRELOAD, PRELOAD_LIMIT)
        except FileNotFoundError:
            pass
        except OSError as e:
            degrade(ctx, self.name, "ld-so-preload", MEDIUM, f"cannot read it raw: {e.strerror}")
            return
        libc: bytes | None = None
        libc_error = None
        try:
            fd = os.open(PRELOAD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                libc = os.read(fd, PRELOAD_LIMIT)
            finally:
                os.close(fd)
        except OSError as e:
            libc_error = errno.errorcode.get(e.errno or 0, str(e))
        entries = [os.fsdecode(w) for w in (raw or b"").split() if not w.startswith(b"#")]
        data["ld_so_preload"] = {
            "present": raw is not None,
            "size": None if raw is None else len(raw),
            "entries": entries,
            "libc_view": "same"
            if libc == raw
            else ("absent: " + libc_error if libc_error else "differs"),
        }
        stored = None
        if raw:
            rec = ctx.engine.store_bytes(
                PRELOAD_OUT, raw, self.name, kind="ld-so-preload-raw",
                source={"path": "/etc/ld.so.preload", "read": "openat+read syscalls"},
            )  # fmt: skip
            stored = rec["path"] if rec else None
        if libc != raw:
            msg = (
                "/etc/ld.so.preload reads differently through libc "
                f"({data['ld_so_preload']['libc_view']}) than through bare syscalls "
                f"({'absent' if raw is None else f'{len(raw)} bytes'}): a hooking library "
                "in this process filters it"
            )
            record_finding(ctx, self.name, "ld-so-preload-hidden", "HIGH", PRELOAD, msg,
                           artifact=stored, entries=entries)  # fmt: skip
            degrade(ctx, self.name, "ld-so-preload", HIGH, msg, entries=entries)
        if entries:
            record_finding(
                ctx, self.name, "ld-so-preload", "MEDIUM", PRELOAD,
                f"/etc/ld.so.preload loads {', '.join(entries[:5])} into every program",
                artifact=stored, entries=entries,
            )  # fmt: skip
