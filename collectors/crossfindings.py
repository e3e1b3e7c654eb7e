"""What the cross-view survey found, judged and recorded by the ``processes`` collector.

- a PID hidden from a complete view (crossview.py): HIGH, flag ``hidden_process``;
- a mount on or under ``/proc/PID``: HIGH, flag ``proc_overmounted``; as root the
  process is read again through a fresh proc instance (freshproc.py) and its record
  filled from there, so it is not called "exited";
- an inet, raw or packet socket no process holds (kernsockets.py): HIGH, or MEDIUM when
  some process's descriptors could not be read (the owner may be among them);
- a view that could not be read at all: MEDIUM.

Each is a ``degraded`` event in the journal, a closing-box row and a ``--json`` entry
(degraded.py); the whole survey is stored as ``artifacts/volatile/crossview.json``.
"""

from __future__ import annotations

import base64
from typing import Any

from . import _linux, crossview, freshproc
from .context import CollectContext
from .degraded import HIGH, MEDIUM, degrade
from .textview import json_bytes, printable

OUT = "artifacts/volatile/crossview.json"
MAX_LISTED = 50


def _flag(proc: dict[str, Any], name: str, reason: str) -> None:
    proc.setdefault("flags", []).append({"flag": name, "reason": reason})


def _what(proc: dict[str, Any]) -> dict[str, Any]:
    """Everything that could still be read about a process, for its journal event."""
    exe = proc.get("executable") or {}
    return {
        "pid": proc["pid"],
        "name": printable(proc.get("name")),
        "cmdline_b64": proc.get("cmdline_b64"),
        "exe": printable(proc.get("exe")),
        "exe_sha256": exe.get("sha256"),
        "ppid": proc.get("ppid"),
        "uids": proc.get("uids"),
        "sockets": proc.get("sockets", [])[:MAX_LISTED],
    }


def _from_fresh(proc: dict[str, Any], fresh: dict[str, Any]) -> None:
    status = fresh.get("status") or {}
    proc.pop("vanished", None)
    proc["read_via"] = "fresh-proc"
    proc["name"] = status.get("Name", proc.get("name"))
    proc["status"] = proc.get("status") or status.get("State", "").split(" ")[0] or None
    for key, field in (("ppid", "PPid"), ("num_threads", "Threads")):
        if status.get(field, "").isdigit():
            proc[key] = int(status[field])
    for key, field in (("uids", "Uid"), ("gids", "Gid")):
        if status.get(field):
            proc[key] = [int(x) for x in status[field].split()[:3]]
    if fresh.get("cmdline_b64") is not None:
        proc["cmdline_b64"] = fresh["cmdline_b64"]
        proc["cmdline"] = _linux.split_cmdline(base64.b64decode(fresh["cmdline_b64"]))
    if fresh.get("exe"):
        proc["exe"] = fresh["exe"]
    if fresh.get("exe_sha256"):
        proc["executable"] = {"sha256": fresh["exe_sha256"]}
    if fresh.get("cwd"):
        proc["cwd"] = fresh["cwd"]
    proc["fd_links"] = fresh.get("fds")


def judge(
    ctx: CollectContext, collector: str, survey: crossview.Survey, snap: Any, procs: list[Any]
) -> None:
    index = {p["pid"]: p for p in procs}
    data: dict[str, Any] = {"survey": survey.to_json()}
    for view, why in {**survey.unreadable, **snap.unreadable}.items():
        degrade(ctx, collector, view, MEDIUM, f"the {view} view could not be read: {why}")
    try:
        overlays = crossview.proc_overlays(_linux.mountinfo())
    except OSError as e:
        overlays = []
        degrade(ctx, collector, "mountinfo", MEDIUM, f"cannot read mountinfo: {e.strerror}")
    data["proc_overlays"] = overlays
    if overlays:
        pids = sorted({m["pid"] for m in overlays})
        fresh = freshproc.read(pids)
        data["fresh_proc"] = fresh
        by_pid = {f["pid"]: f for f in fresh.get("processes", []) if "error" not in f}
        for pid in pids:
            proc = index.get(pid)
            if proc is None and pid in by_pid:
                proc = index[pid] = {"pid": pid, "flags": [], "sockets": []}
                procs.append(proc)
            points = [m["mountpoint"] for m in overlays if m["pid"] == pid]
            if proc is not None:
                if pid in by_pid:
                    _from_fresh(proc, by_pid[pid])
                _flag(proc, "proc_overmounted", f"a mount covers {', '.join(points)}")
            read = "read through a fresh proc" if pid in by_pid else fresh.get("error", "unread")
            degrade(
                ctx,
                collector,
                "proc-mounts",
                HIGH,
                f"pid {pid} is hidden by a mount on {', '.join(points)} ({read})",
                mounts=overlays[:MAX_LISTED],
                process=_what(proc) if proc else {"pid": pid},
            )
    for pid, views in sorted(survey.hidden.items()):
        proc = index.get(pid) or {"pid": pid}
        _flag(proc, "hidden_process", f"exists, but missing from the {', '.join(views)} view")
        degrade(
            ctx,
            collector,
            "processes",
            HIGH,
            f"hidden process: pid {pid} ({printable(proc.get('name')) or '?'}) exists but is "
            f"missing from the {', '.join(views)} view",
            hidden_from=views,
            process=_what(proc),
        )
    _ownerless(ctx, collector, survey, snap, data)
    data["kernel_sockets"] = snap.kernel_sockets
    ctx.engine.store_bytes(OUT, json_bytes(data), collector, kind="cross-view")


def _ownerless(
    ctx: CollectContext,
    collector: str,
    survey: crossview.Survey,
    snap: Any,
    data: dict[str, Any],
) -> None:
    ownerless = [s for s in snap.kernel_sockets if s["inode"] and not s["pids"]]
    data["ownerless_sockets"] = ownerless
    if not ownerless:
        return
    # Not conclusive when some descriptors were unreadable: the owner may be among them.
    doubt = survey.fd_denied and f"the descriptors of {len(survey.fd_denied)} pids were denied"
    shown = "; ".join(
        f"{s['table']} {s.get('laddr', s.get('ethertype'))}:{s.get('lport', s.get('ifindex'))}"
        f" inode {s['inode']}"
        for s in ownerless[:3]
    )
    more = "; ..." if len(ownerless) > 3 else ""
    degrade(
        ctx,
        collector,
        "sockets",
        MEDIUM if doubt else HIGH,
        f"{len(ownerless)} socket(s) held by no process ({shown}{more})"
        + (
            f"; not conclusive: {doubt}"
            if doubt
            else "; a hidden owner, a descriptor in flight or a kernel service (nfsd, WireGuard)"
        ),
        sockets=ownerless[:MAX_LISTED],
    )
