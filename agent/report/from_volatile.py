"""Findings from the volatile state: suspicious processes, unexpected listeners and
connections to non-local addresses (``processes.jsonl``, ``sockets.jsonl``,
``network.json``; see ``volatile.py`` for how they are read)."""

from __future__ import annotations

import ipaddress
from typing import Any

from collectors.network import is_local
from collectors.redact import redact

from . import volatile, words
from .bounded import mapping
from .evidence import Evidence, to_ns
from .findings import HIGH, INFO, MAX_LISTED, MEDIUM, WRITABLE_DIRS, Finding, Findings


def _flag_names(proc: dict[str, Any]) -> set[str]:
    names = set()
    for f in proc.get("flags") or []:
        if isinstance(f, dict) and isinstance(f.get("flag"), str):
            names.add(f["flag"])
        elif isinstance(f, str):
            names.add(f)
    return names


def _proc_label(p: dict[str, Any]) -> str:
    return f"pid {p.get('pid')} ({p.get('name') or '?'})"


def suspicious_exe(p: dict[str, Any]) -> list[str]:
    """Why a process's executable is suspicious, from the collector's flags and from the
    executable link itself (so older or partial snapshots are judged too)."""
    exe = str(p.get("exe") or "")
    flags = _flag_names(p)
    reasons = []
    if p.get("exe_deleted") or exe.endswith(" (deleted)") or "exe_deleted" in flags:
        reasons.append("its executable was deleted from disk")
    if "exe_replaced" in flags:
        reasons.append("the file at its executable's path is not the one running (replaced)")
    if exe.startswith("memfd:") or "/memfd:" in exe or "exe_in_memory" in flags:
        reasons.append("it runs from memory (memfd:), with no file on disk")
    if exe.startswith(WRITABLE_DIRS) or "exe_in_writable_location" in flags:
        reasons.append("it runs from a world-writable directory (/tmp, /dev/shm, ...)")
    return reasons


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def processes(ev: Evidence, v: volatile.Volatile, out: Findings) -> None:
    """One finding per suspicious executable: several processes of the same binary (a
    forking backdoor) are one finding listing every pid."""
    if v.processes is None:
        out.gaps["processes"] = "not collected: no process table in artifacts/volatile/"
        return
    src = v.source("processes")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for p in v.processes:
        reasons = suspicious_exe(p)
        others = _flag_names(p) - {
            "exe_deleted",
            "exe_replaced",
            "exe_in_memory",
            "exe_in_writable_location",
        }
        if not reasons and not others:
            continue
        exe_info = mapping(p.get("executable"))
        key = (p.get("exe"), exe_info.get("sha256"), tuple(reasons), tuple(sorted(others)))
        groups.setdefault(key, []).append(p)
    for (exe, sha, reasons, others), procs in groups.items():
        p = procs[0]
        exe_info = mapping(p.get("executable"))
        refs = [src.ref(pids=[q.get("pid") for q in procs[:MAX_LISTED]])]
        copy = exe_info.get("preserved_as")
        if isinstance(copy, str) and copy in ev.artifacts:
            refs.append({"artifact": copy, "seq": ev.artifacts[copy].get("seq")})
        cmd = p.get("cmdline")
        details = [
            f"executable: {exe or 'unknown'}",
            "command line: "  # as typed, less any password (collectors/redact.py)
            + _short(redact(" ".join(map(str, cmd)))[0] if isinstance(cmd, list) else "unknown"),
            f"user: {p.get('username') or (p.get('uids') or ['?'])[0]}; "
            f"started {p.get('create_time') or 'unknown'}; parent pid {p.get('ppid')}",
        ]
        if len(procs) > 1:
            details.append(
                f"{len(procs)} processes: pids "
                + ", ".join(str(q.get("pid")) for q in procs[:MAX_LISTED])
            )
        if sha:
            details.append(f"executable SHA-256: {sha}")
        if copy:
            details.append(f"binary preserved as {copy}")
        for f in p.get("flags") or []:
            if isinstance(f, dict) and f.get("flag") in others:
                details.append(f"red flag {f.get('flag')}: {_short(str(f.get('reason', '')))}")
        who = (
            _proc_label(p)
            if len(procs) == 1
            else f"{len(procs)} processes of one executable ({p.get('name')})"
        )
        title = (
            f"{who}: {'; '.join(reasons)}" if reasons else (f"{who}: red flags {', '.join(others)}")
        )
        out.add(
            Finding(
                "processes",
                HIGH if reasons else MEDIUM,
                title,
                refs,
                details,
                min((to_ns(q.get("create_time")) or 0 for q in procs), default=0) or None,
            )
        )


def listeners(v: volatile.Volatile, expected: frozenset[int], out: Findings) -> None:
    rows = volatile.listening(v)
    if rows is None:
        out.gaps["listening"] = "not collected: no socket table or network.json"
        return
    src = volatile.listening_source(v)
    flagged = {p.get("pid") for p in (v.processes or []) if suspicious_exe(p) or _flag_names(p)}
    for s in rows:
        port = s.get("lport")
        why = []
        if port not in expected:
            why.append(f"port {port} is not in the expected list")
        if s.get("pid") is not None and s.get("pid") in flagged:
            why.append("its process has red flags")
        if not why:
            continue
        addr = s.get("laddr") or "*"
        where = "loopback only" if _loop(addr) else ""
        owner = (
            f"pid {s['pid']} ({s.get('process') or 'name unknown'})"
            if s.get("pid") is not None
            else "no process the tool could see (see the degraded views, if any)"
        )
        out.add(
            Finding(
                "listening",
                HIGH if s.get("pid") in flagged else MEDIUM,
                f"{s.get('proto')} {addr}:{port} listened on by {owner}",
                [src.ref(port=port, pid=s.get("pid"))],
                [
                    "; ".join(why) + (f" ({where})" if where else ""),
                    f"executable: {s.get('exe') or 'unknown'}"
                    + (f", SHA-256 {s['exe_sha256']}" if s.get("exe_sha256") else ""),
                ],
            )
        )


def _loop(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def connections(v: volatile.Volatile, out: Findings) -> None:
    rows = volatile.established(v)
    if rows is None:
        out.gaps["connections"] = "not collected: no socket table or network.json"
        return
    src = volatile.established_source(v)
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in rows:
        if not is_local(s.get("raddr")):
            groups.setdefault(str(s.get("raddr")), []).append(s)
    for addr, conns in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        kind = words.address_kind(addr)
        procs = sorted(
            {
                f"{c.get('process') or 'unnamed'} (pid {c['pid']})"
                if c.get("pid") is not None
                else "no visible process"
                for c in conns
            }
        )
        ports = sorted({c["rport"] for c in conns if isinstance(c.get("rport"), int)})
        out.add(
            Finding(
                "connections",
                INFO if words.is_internal(kind) else MEDIUM,
                f"{words.plural(len(conns), 'connection')} to {addr} ({kind}), remote "
                f"{'port' if len(ports) == 1 else 'ports'} "
                f"{', '.join(map(str, ports)) or 'unknown'}",
                [src.ref(remote=addr)],
                [f"processes: {', '.join(procs)}"],
            )
        )
