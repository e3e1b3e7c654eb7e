"""Did the host's dynamic loader put code into THIS process? Asked past libc.

A user-space rootkit lives in ``/etc/ld.so.preload`` (or ``LD_PRELOAD``/``LD_AUDIT``):
the host's loader maps it into every dynamically linked program, where it hooks libc to
hide processes, files, itself in ``/proc/self/maps`` and the preload file. The kit starts
through its own loader, which never reads the host's list (packaging/launcher.c); the
pip-installed tool cannot refuse it, but it can see it:

- ``/proc/self/maps`` and ``/etc/ld.so.preload`` are read twice: through bare
  ``openat``/``read`` system calls (collectors/rawsys.py, which no preloaded library can
  filter) and through libc, as every other reader does. A mapping or a preload list that
  only the raw read shows is being hidden.
- A mapped library that the preload list or ``LD_PRELOAD``/``LD_AUDIT`` names (in the
  kit: any library outside the kit's folder) is injected code.

``judge`` records what it found as ``degraded`` events (HIGH), keeps the raw preload list
as evidence and stores the whole view as ``artifacts/volatile/loader.json``. Environment
values are never stored: only the names of the variables that were set.
"""

from __future__ import annotations

import os
from typing import Any

from . import rawsys
from .context import CollectContext
from .degraded import HIGH, MEDIUM, degrade
from .textview import json_bytes

PRELOAD = "/etc/ld.so.preload"
MAPS = "/proc/self/maps"
OUT = "artifacts/volatile/loader.json"
# Not named after the file: a rootkit that hides "ld.so.preload" by name would hide this
# copy from the writer too (tried: the copy vanished under the test's hooking library).
PRELOAD_OUT = "artifacts/volatile/preload-list.raw"
MAX_PRELOAD = 64 * 1024
MAX_MAPS = 8 << 20
LOADER_ENV = ("LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH")
DROPPED_ENV = "PRESERVE_KIT_DROPPED"  # names the kit's launcher removed (launcher.c)


def _mapped(maps: bytes) -> set[str]:
    """Paths of the file-backed mappings that are code: executable, or a shared object."""
    found = set()
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith(b"/"):
            continue
        path = parts[5].decode("utf-8", "backslashreplace").removesuffix(" (deleted)")
        if path == "/dev/zero":  # shared anonymous memory (rawsys.py's code page)
            continue
        if b"x" in parts[1] or ".so" in os.path.basename(path):
            found.add(path)
    return found


def _raw(path: str, limit: int) -> tuple[bytes | None, str | None]:
    try:
        return rawsys.read_file(path, limit), None
    except OSError as e:
        return None, e.strerror or str(e)


def _through_libc(path: str, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    try:
        with open(path, "rb", buffering=0) as f:  # proc files answer a page per read
            while sum(map(len, chunks)) < limit and (chunk := f.read(1 << 16)):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks)


def _named(values: list[str]) -> set[str]:
    """Library names a preload list or variable holds (space or colon separated)."""
    return {w for v in values for w in v.replace(":", " ").split() if w}


def self_view(kit: str | None) -> tuple[dict[str, Any], bytes | None]:
    """What is mapped into this process and what the host's loader is asked to add.
    ``kit``: the kit's folder when running from one (then anything outside it counts).
    Also returns the preload list's raw bytes (evidence, not for the journal)."""
    raw_maps, maps_error = _raw(MAPS, MAX_MAPS)
    mapped = _mapped(raw_maps or b"")
    libc_mapped = _mapped(_through_libc(MAPS, MAX_MAPS) or b"")
    raw_preload, preload_error = _raw(PRELOAD, MAX_PRELOAD)
    libc_preload = _through_libc(PRELOAD, MAX_PRELOAD)
    preload = sorted(_named([(raw_preload or b"").decode("utf-8", "backslashreplace")]))
    env_set = [n for n in LOADER_ENV if os.environ.get(n)]
    if kit is not None:
        prefix = os.path.realpath(kit) + "/"
        outside = sorted(p for p in mapped if not os.path.realpath(p).startswith(prefix))
        unexpected = outside
    else:
        outside = sorted(mapped)
        names = _named(preload + [os.environ.get(n, "") for n in ("LD_PRELOAD", "LD_AUDIT")])
        paths = {os.path.realpath(n) for n in names if n.startswith("/")}
        bases = {n for n in names if "/" not in n}
        hidden = mapped - libc_mapped
        unexpected = sorted(
            p for p in mapped if p in paths or os.path.basename(p) in bases or p in hidden
        )
    try:
        exe = os.readlink("/proc/self/exe")
    except OSError:
        exe = None
    return {
        "read_via": "syscall instruction" if rawsys.KERNEL_DIRECT else "libc syscall()",
        "maps_error": maps_error,
        "loader": exe,
        "host_libraries": outside,
        "unexpected": unexpected,
        "hidden_from_libc": sorted(mapped - libc_mapped) if raw_maps is not None else [],
        "ld_so_preload": preload,
        "ld_so_preload_error": preload_error,
        "ld_so_preload_hidden": bool(raw_preload) and libc_preload != raw_preload,
        # Whether they are set, not their values: environment values are never stored.
        "ld_preload": "LD_PRELOAD" in env_set,
        "environment": env_set,
        "environment_dropped": [n for n in os.environ.get(DROPPED_ENV, "").split(",") if n],
    }, raw_preload


def view(kit: str | None) -> dict[str, Any]:
    """``self_view`` without the raw preload bytes (the journal's ``kit.loader``)."""
    return self_view(kit)[0]


def judge(ctx: CollectContext, collector: str, kit: str | None) -> None:
    """Record this process's loader view; every sign of the host's loader is HIGH."""
    found, raw_preload = self_view(kit)
    if raw_preload:
        ctx.engine.store_bytes(PRELOAD_OUT, raw_preload, collector, kind="preload-list-raw")
        hidden = "; libc's view of it is hidden or altered" if found["ld_so_preload_hidden"] else ""
        degrade(
            ctx, collector, "ld.so.preload", HIGH,
            f"{PRELOAD} names {', '.join(found['ld_so_preload']) or 'nothing readable'}: the "
            f"host's loader maps it into every dynamically linked program (a user-space "
            f"rootkit's place){hidden}; kept raw as {PRELOAD_OUT}",
            libraries=found["ld_so_preload"], hidden_from_libc=found["ld_so_preload_hidden"],
        )  # fmt: skip
    if found["unexpected"]:
        where = "the kit's own process" if kit else "this process (the pip-installed tool)"
        consequence = (
            "the kit's view is not clean"
            if kit
            else "what it read through libc (process lists, files) may be filtered; "
            "collect again with the USB kit, which the host's loader cannot reach"
        )
        masked = [p for p in found["unexpected"] if p in found["hidden_from_libc"]]
        degrade(
            ctx, collector, "injected-code", HIGH,
            f"the host's loader put {', '.join(found['unexpected'])} into {where}"
            + (f" ({', '.join(masked)} hidden from libc's /proc/self/maps)" if masked else "")
            + f": {consequence}",
            libraries=found["unexpected"], hidden_from_libc=masked,
        )  # fmt: skip
    asked = [n for n in found["environment_dropped"] if n in ("LD_PRELOAD", "LD_AUDIT")]
    if asked:
        degrade(
            ctx, collector, "loader-environment", MEDIUM,
            f"the environment the kit was started from set {', '.join(asked)}; the kit's "
            "launcher removed them before any code was loaded",
            variables=asked,
        )  # fmt: skip
    ctx.engine.store_bytes(OUT, json_bytes(found), collector, kind="loader-view")
