"""The eBPF view of the ``kernel`` collector: the ID walk (collectors/bpf.py) against what
else holds eBPF objects alive, and the programs worth a look.

An eBPF program or link exists as long as something holds it: a process's descriptor
(``anon_inode:bpf-prog`` / ``anon_inode:bpf_link``, whose ``fdinfo`` gives the id), a pin
in a bpf file system (``/sys/fs/bpf``), or an attachment. An object held by a descriptor
or a pin that the walk does not return, still missing from a second walk and still held,
is hidden from the walk: HIGH. The walk itself refused (no CAP_SYS_ADMIN) or cut short
is a MEDIUM degraded view, never an empty list.
"""

from __future__ import annotations

import os
from typing import Any

from . import _linux, bpf, fdtable, readfile
from .context import CollectContext
from .degraded import MEDIUM, degrade, disagreement
from .findings import record_finding
from .procfiles import FD_TABLE, pids_of

# Program types that can read (or, with bpf_probe_write_user and bpf_override_return,
# change) kernel and process memory, or see and drop packets before any socket does:
# the types eBPF rootkits and backdoors use. LOW: monitoring agents use them too.
WATCHED_TYPES = frozenset(
    bpf.words(
        "kprobe tracepoint perf_event raw_tracepoint raw_tracepoint_writable tracing lsm ext "
        "xdp sched_cls sched_act socket_filter"
    )
)
_KIND = {
    "anon_inode:bpf-prog": ("programs", "prog_id"),
    "anon_inode:bpf_link": ("links", "link_id"),
}
_PIN_KIND = {"program": "programs", "link": "links"}


def _link(pid: int, n: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{n}")
    except OSError:
        return ""


def _fdinfo(pid: int, n: str) -> dict[str, Any]:
    try:
        raw = readfile.read_regular(f"/proc/{pid}/fdinfo/{n}", 65536)
    except OSError:
        return {}
    return fdtable.parse_fdinfo(raw.decode("utf-8", "backslashreplace"))


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


def holders(ctx: CollectContext) -> dict[str, dict[int, list[int]]]:
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


def _still_held(
    kind: str, obj_id: int, pids: list[int], pins: list[str]
) -> tuple[list[int], list[str]]:
    """The pids and pins that hold the object now (it may have been released since)."""
    now = []
    for pid in pids:
        try:
            if obj_id in _object_ids(_bpf_fds(pid), kind):
                now.append(pid)
        except OSError:
            continue
    pinned = [p for p in pins if bpf.pinned_object(p).get("id") == obj_id]
    return now, pinned


def _pins(ctx: CollectContext, collector: str) -> list[dict[str, Any]]:
    try:
        mounts = [m["mountpoint"] for m in _linux.mountinfo() if m["fstype"] == "bpf"]
    except OSError as e:
        degrade(ctx, collector, "ebpf-pins", MEDIUM, f"cannot read mountinfo: {e.strerror}")
        return []
    return bpf.pinned(mounts)


def judge(ctx: CollectContext, collector: str, data: dict[str, Any], artifact: str) -> None:
    """Walk, compare, record; the view goes to ``data["ebpf"]``."""
    inv = bpf.inventory()
    held = holders(ctx)
    inv.pinned = _pins(ctx, collector)
    pinned_at: dict[tuple[str, int], list[str]] = {}
    for pin in inv.pinned:
        if pin.get("kind") in _PIN_KIND and "id" in pin:
            pinned_at.setdefault((_PIN_KIND[pin["kind"]], pin["id"]), []).append(pin["path"])
    data["ebpf"] = {
        **inv.to_json(),
        "held_by": {k: {str(i): p for i, p in sorted(v.items())} for k, v in held.items()},
    }
    for view, why in inv.unreadable.items():
        degrade(ctx, collector, f"ebpf-{view}", MEDIUM, f"cannot list eBPF {view}: {why}")
    if inv.refused:
        degrade(
            ctx, collector, "ebpf-objects", MEDIUM,
            f"the kernel listed {len(inv.refused)} eBPF object(s) but refused to describe "
            f"them ({', '.join(sorted({r['error'] for r in inv.refused}))})",
            refused=inv.refused[:50],
        )  # fmt: skip
    if inv.unreadable:
        return  # an incomplete walk cannot show what is missing from it
    _hidden(ctx, collector, inv, held, pinned_at, artifact)
    _watched(ctx, collector, inv, held, artifact)


def _hidden(
    ctx: CollectContext,
    collector: str,
    inv: bpf.Inventory,
    held: dict[str, dict[int, list[int]]],
    pinned_at: dict[tuple[str, int], list[str]],
    artifact: str,
) -> None:
    listed = {"programs": {p["id"] for p in inv.programs}, "links": {k["id"] for k in inv.links}}
    refused = {(r["kind"], r["id"]) for r in inv.refused}
    wanted = {(k, i) for k, ids in held.items() for i in ids} | set(pinned_at)
    again: bpf.Inventory | None = None
    for kind, obj_id in sorted(wanted):
        if obj_id in listed[kind] or (kind, obj_id) in refused:
            continue
        again = again or bpf.inventory()  # once: loaded after the first walk?
        if obj_id in {o["id"] for o in getattr(again, kind)}:
            continue
        pids, pins = _still_held(
            kind, obj_id, held[kind].get(obj_id, []), pinned_at.get((kind, obj_id), [])
        )
        if not pids and not pins:
            continue  # released (and freed) since it was seen
        by = ", ".join([f"pid {p}" for p in pids[:5]] + [f"pin {p}" for p in pins[:5]])
        disagreement(
            ctx, collector, "ebpf-hidden", "ebpf",
            (f"/proc/{pids[0]}/fdinfo" if pids else pins[0]).encode(),
            f"eBPF {kind[:-1]} {obj_id} is held by {by} but missing from the kernel's ID walk",
            artifact, kind=kind[:-1], id=obj_id, pids=pids[:50], pins=pins[:50],
        )  # fmt: skip


def _watched(
    ctx: CollectContext,
    collector: str,
    inv: bpf.Inventory,
    held: dict[str, dict[int, list[int]]],
    artifact: str,
) -> None:
    attached = {lk["prog_id"]: lk for lk in inv.links}
    for prog in inv.programs:
        if prog["type"] not in WATCHED_TYPES:
            continue
        link = attached.get(prog["id"])
        where = (
            f" attached by link {link['id']} ({link['type']} {link.get('target', '')})"
            if link
            else ""
        )
        record_finding(
            ctx, collector, "ebpf-program", "LOW", f"bpf:prog/{prog['id']}".encode(),
            f"eBPF {prog['type']} program {prog['id']} {prog['name']!r}{where}",
            artifact=artifact, program=prog, held_by=held["programs"].get(prog["id"], [])[:20],
        )  # fmt: skip
