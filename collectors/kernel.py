"""``kernel``: what the kernel says about itself, through more than one view each.

- modules: ``/proc/modules`` against ``/sys/module`` (loadable entries only), and the raw
  read of ``/proc/modules`` against libc's (collectors/kmodules.py);
- taint: ``/proc/sys/kernel/tainted`` decoded into words, and checked against the taint
  letters the listed modules carry;
- eBPF: every program and link the ``bpf`` syscall's ID walk lists (collectors/bpf.py),
  with attach points, against the objects processes hold descriptors to and the pins in
  the bpf file systems (collectors/ebpfcheck.py);
- ``/etc/ld.so.preload``: read through bare ``openat``/``read`` and through libc
  (collectors/loaderview.py's reading, shared).

Stored as ``artifacts/volatile/kernel.json`` (the preload file's raw copy is
loaderview's ``preload-list.raw``). Each disagreement is a finding (HIGH: a hidden
module, a hidden eBPF object, a hidden preload file) and a ``degraded`` event; a view
that cannot be read is a ``degraded`` event (MEDIUM). What each view costs, and what a
kernel rootkit can still hide from all of them, is in docs/threat-model.md.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from . import ebpfcheck, kmodules, loaderview, rawsys
from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .degraded import MEDIUM, degrade, disagreement
from .findings import record_finding, summarize
from .textview import json_bytes

OUT = "artifacts/volatile/kernel.json"
PRELOAD = b"/etc/ld.so.preload"
RULES = {
    "module-hidden", "module-hidden-from-libc", "kernel-tainted", "taint-without-module",
    "ebpf-hidden", "ebpf-program", "ld-so-preload", "ld-so-preload-hidden",
}  # fmt: skip


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

    def _modules(self, ctx: CollectContext, data: dict[str, Any]) -> None:
        views = kmodules.survey()
        data["modules"] = views.to_json()
        data["modules"]["loadable_support"] = views.proc is not None
        for view, why in views.unreadable.items():
            degrade(ctx, self.name, f"kernel-{view}", MEDIUM, f"cannot read {view}: {why}")
        for name in views.hidden_from_proc:
            where = "" if views.proc is not None else " (this kernel shows no /proc/modules)"
            disagreement(
                ctx, self.name, "module-hidden", "kernel-modules", f"/sys/module/{name}".encode(),
                f"kernel module {name} is in /sys/module but not in /proc/modules{where}",
                OUT, module=name, sysfs=views.sys.get(name),
            )  # fmt: skip
        for name in views.hidden_from_sys:
            disagreement(
                ctx, self.name, "module-hidden", "kernel-modules", kmodules.PROC_MODULES.encode(),
                f"kernel module {name} is in /proc/modules but has no /sys/module entry",
                OUT, module=name,
            )  # fmt: skip
        if views.hidden_from_libc:
            disagreement(
                ctx, self.name, "module-hidden-from-libc", "kernel-modules-libc",
                kmodules.PROC_MODULES.encode(),
                f"libc's read of /proc/modules hides {', '.join(views.hidden_from_libc[:5])} "
                "that the kernel lists: a library in this process filters what it reads",
                OUT, modules=views.hidden_from_libc[:50],
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
        ebpfcheck.judge(ctx, self.name, data, OUT)

    def _preload(self, ctx: CollectContext, data: dict[str, Any]) -> None:
        """``/etc/ld.so.preload`` as collectors/loaderview.py reads it (bare syscalls and
        libc). When ``processes`` ran, loaderview already recorded the degraded event and
        kept the raw copy; here each fact becomes a finding linked to that copy."""
        found, raw = loaderview.self_view(None)
        entries = found["ld_so_preload"]
        hidden = found["ld_so_preload_hidden"]
        data["ld_so_preload"] = {
            "present": raw is not None,
            "size": None if raw is None else len(raw),
            "entries": entries,
            "hidden_from_libc": hidden,
            "error": found["ld_so_preload_error"],
        }
        stored = loaderview.PRELOAD_OUT if raw else None
        judged = "process_index" in ctx.shared  # processes ran loaderview.judge
        if raw and not judged:
            rec = ctx.engine.store_bytes(
                loaderview.PRELOAD_OUT, raw, self.name, kind="preload-list-raw"
            )
            stored = rec["path"] if rec else None
        if hidden:
            msg = (
                f"{loaderview.PRELOAD} reads differently through libc than through bare "
                f"syscalls ({len(raw or b'')} bytes): a hooking library in this process filters it"
            )
            if judged:
                record_finding(ctx, self.name, "ld-so-preload-hidden", "HIGH",
                               PRELOAD, msg, artifact=stored, entries=entries)  # fmt: skip
            else:
                disagreement(
                    ctx, self.name, "ld-so-preload-hidden", "ld.so.preload", PRELOAD, msg,
                    stored, entries=entries,
                )  # fmt: skip
        # One finding per fact: in a run with the persistence collector (every profile's
        # default) its rule ld-preload-present says it; this one is for --only kernel runs.
        if entries and ctx.options.only and "persistence" not in ctx.options.only:
            record_finding(
                ctx, self.name, "ld-so-preload", "MEDIUM", PRELOAD,
                f"/etc/ld.so.preload loads {', '.join(entries[:5])} into every program",
                artifact=stored, entries=entries,
            )  # fmt: skip
