"""Kernel modules through two views, and the kernel's taint, decoded and cross-checked.

``/proc/modules`` walks the kernel's module list; ``/sys/module`` holds a kobject per
module. A rootkit that unlinks itself from the list (the classic ``list_del`` of
Diamorphine and its kin) is still in ``/sys/module`` unless it also deletes its kobject,
and the reverse. Only *loadable* modules can disagree: built-in code with parameters has
a ``/sys/module`` directory too, but never ``initstate`` or ``coresize``, and never a
``/proc/modules`` line, so those are left out. A kernel built without module support has
no ``/proc/modules`` at all; then any loadable entry in ``/sys/module`` is hidden.

Both are listed and read through bare system calls (``getdents64``, ``openat``/``read``,
collectors/rawsys.py), and ``/proc/modules`` through libc as well: a hooking library that
filters libc's answer makes the two disagree. A disagreement is re-read once before it
counts, so a module loading or unloading during the read is not called hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import _linux, rawsys

SYS_MODULE = "/sys/module"
PROC_MODULES = "/proc/modules"
TAINTED = "/proc/sys/kernel/tainted"
_LIMIT = 16 * 1024 * 1024
# Taint letters a module sets when it is loaded (P, F, C, O, E) or forced out (R): with no
# module carrying the letter now, the module that set it was unloaded, or is hidden.
MODULE_TAINTS = {"P": 0, "F": 1, "R": 3, "C": 10, "O": 12, "E": 13}


def _small(path: str) -> str | None:
    try:
        return rawsys.read_file(path.encode(), 4096).decode("utf-8", "backslashreplace").strip()
    except OSError:
        return None


def sys_modules() -> dict[str, dict[str, Any]]:
    """``/sys/module`` entries that are loadable modules: name -> initstate, coresize,
    refcnt, taint as sysfs gives them. Raises OSError when the directory cannot be read."""
    out: dict[str, dict[str, Any]] = {}
    for raw in rawsys.getdents(SYS_MODULE):
        name = raw.decode("utf-8", "backslashreplace")
        base = f"{SYS_MODULE}/{name}"
        fields = {k: _small(f"{base}/{k}") for k in ("initstate", "coresize", "refcnt", "taint")}
        if fields["initstate"] is None and fields["coresize"] is None:
            continue  # built-in: parameters only, never on /proc/modules
        out[name] = {k: v for k, v in fields.items() if v is not None}
    return out


def proc_modules_raw() -> list[dict[str, Any]] | None:
    """``/proc/modules`` read through bare syscalls; None when the kernel has none."""
    try:
        text = rawsys.read_file(PROC_MODULES.encode(), _LIMIT)
    except FileNotFoundError:
        return None
    return _linux.parse_modules(text.decode("utf-8", "backslashreplace"))


def proc_modules_libc() -> list[dict[str, Any]] | None:
    try:
        return _linux.kernel_modules()
    except FileNotFoundError:
        return None


@dataclass
class ModuleViews:
    proc: list[dict[str, Any]] | None = None  # None: no /proc/modules on this kernel
    sys: dict[str, dict[str, Any]] = field(default_factory=dict)
    libc_names: list[str] | None = None
    hidden_from_proc: list[str] = field(default_factory=list)  # in sysfs, not the list
    hidden_from_sys: list[str] = field(default_factory=list)  # in the list, not sysfs
    hidden_from_libc: list[str] = field(default_factory=list)  # raw read has it, libc not
    unreadable: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "proc_modules": self.proc,
            "sys_module_loadable": self.sys,
            "hidden_from_proc_modules": self.hidden_from_proc,
            "hidden_from_sys_module": self.hidden_from_sys,
            "hidden_from_libc_read": self.hidden_from_libc,
            "unreadable": self.unreadable,
        }


def compare(
    proc: list[dict[str, Any]] | None, sys: dict[str, dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """(loadable modules in /sys/module missing from /proc/modules, live modules in
    /proc/modules missing from /sys/module). Modules still loading or going away are
    left out of the second list: their kobject comes and goes around that moment."""
    listed = {m["name"] for m in proc or []}
    from_proc = sorted(n for n in sys if n not in listed)
    from_sys = sorted(
        m["name"] for m in proc or [] if m["name"] not in sys and m["state"] == "Live"
    )
    return from_proc, from_sys


def _read_views(views: ModuleViews) -> None:
    try:
        views.proc = proc_modules_raw()
    except OSError as e:
        views.unreadable["proc_modules"] = e.strerror or str(e)
    try:
        views.sys = sys_modules()
    except OSError as e:
        views.unreadable["sys_module"] = e.strerror or str(e)


def survey() -> ModuleViews:
    views = ModuleViews()
    _read_views(views)
    if views.unreadable:
        return views
    first = compare(views.proc, views.sys)
    if first[0] or first[1]:
        _read_views(views)  # confirm: a module may have been (un)loading
        again = compare(views.proc, views.sys)
        views.hidden_from_proc = sorted(set(first[0]) & set(again[0]))
        views.hidden_from_sys = sorted(set(first[1]) & set(again[1]))
    try:
        libc = proc_modules_libc()
        views.libc_names = None if libc is None else [m["name"] for m in libc]
    except OSError as e:
        views.unreadable["proc_modules_libc"] = e.strerror or str(e)
    if views.proc is not None:  # libc saying "no such file" hides every module
        seen = set(views.libc_names or [])
        views.hidden_from_libc = sorted(m["name"] for m in views.proc if m["name"] not in seen)
    return views


def taint() -> dict[str, Any]:
    """The kernel's taint value, decoded into words. Raises OSError."""
    raw = rawsys.read_file(TAINTED.encode(), 64).decode("ascii", "replace").strip()
    value = int(raw) if raw.isdigit() else -1
    if value < 0:
        raise OSError(0, f"not a number: {raw[:20]!r}", TAINTED)
    return {"value": value, "flags": _linux.decode_taint(value)}


def orphan_taints(value: int, views: ModuleViews) -> list[str]:
    """Module taint letters set in the kernel's value that no module now listed carries."""
    carried = {ch for m in views.proc or [] for ch in m.get("taint", "")}
    carried |= {ch for m in views.sys.values() for ch in m.get("taint", "")}
    return [ch for ch, bit in MODULE_TAINTS.items() if value & (1 << bit) and ch not in carried]
