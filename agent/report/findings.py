"""Findings: what in the evidence deserves a person's attention first.

Each finding names the stored artifact and the journal ``seq`` of the record that vouches
for it, so whoever reads the report can go from a sentence to the bytes and check them.
Findings are hints for where to look, not verdicts; where the evidence needed for a
category was not collected, the category says so instead of staying silent.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import logins, volatile
from .evidence import Evidence, to_ns, utc_text

WRITABLE_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/dev/mqueue/")
# Listening ports that are ordinary on servers; anything else is called out. Extend with
# ``preserve report --expect-port``.
EXPECTED_PORTS = frozenset(
    {22, 25, 53, 67, 68, 80, 123, 143, 443, 465, 546, 587, 631, 993, 995, 5353}
)
RECENT_DAYS = 7
MAX_LISTED = 50
HIGH, MEDIUM, INFO = "high", "medium", "info"
SEVERITY_ORDER = {HIGH: 0, MEDIUM: 1, INFO: 2}


@dataclass
class Finding:
    category: str
    severity: str
    title: str
    refs: list[dict[str, Any]]
    details: list[str] = field(default_factory=list)
    time_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "severity": self.severity,
            "title": self.title,
            "details": self.details,
            "time": utc_text(self.time_ns) if self.time_ns else None,
            "refs": self.refs,
        }


@dataclass
class Findings:
    items: list[Finding] = field(default_factory=list)
    # category -> why it could not be assessed ("not collected: ...")
    gaps: dict[str, str] = field(default_factory=dict)
    logins: list[dict[str, Any]] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.items.append(finding)

    def sorted(self) -> list[Finding]:
        return sorted(self.items, key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), f.category))


def is_local(addr: Any) -> bool:
    if not isinstance(addr, str) or not addr:
        return True
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


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


def _processes(ev: Evidence, v: volatile.Volatile, out: Findings) -> None:
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
        exe_info = p.get("executable") if isinstance(p.get("executable"), dict) else {}
        key = (p.get("exe"), exe_info.get("sha256"), tuple(reasons), tuple(sorted(others)))
        groups.setdefault(key, []).append(p)
    for (exe, sha, reasons, others), procs in groups.items():
        p = procs[0]
        exe_info = p.get("executable") if isinstance(p.get("executable"), dict) else {}
        refs = [src.ref(pids=[q.get("pid") for q in procs[:MAX_LISTED]])]
        copy = exe_info.get("preserved_as")
        if copy and copy in ev.artifacts:
            refs.append({"artifact": copy, "seq": ev.artifacts[copy].get("seq")})
        cmd = p.get("cmdline")
        details = [
            f"executable: {exe or 'unknown'}",
            "command line: "
            + _short(" ".join(map(str, cmd)) if isinstance(cmd, list) else "unknown"),
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


def _listeners(v: volatile.Volatile, expected: frozenset[int], out: Findings) -> None:
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
        out.add(
            Finding(
                "listening",
                HIGH if s.get("pid") in flagged else MEDIUM,
                f"{s.get('proto')} {addr}:{port} listened on by pid {s.get('pid')} "
                f"({s.get('process') or '?'})",
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


def _connections(v: volatile.Volatile, out: Findings) -> None:
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
        try:
            private = ipaddress.ip_address(addr.split("%", 1)[0]).is_private
        except ValueError:
            private = False
        procs = sorted({f"{c.get('process') or '?'}[{c.get('pid')}]" for c in conns})
        ports = sorted({c.get("rport") for c in conns if c.get("rport") is not None})
        out.add(
            Finding(
                "connections",
                INFO if private else MEDIUM,
                f"{len(conns)} connection(s) to {addr} ({'private' if private else 'public'} "
                f"address), remote port(s) {', '.join(map(str, ports)) or '?'}",
                [src.ref(remote=addr)],
                [f"processes: {', '.join(procs)}"],
            )
        )


def _login_rows(ev: Evidence, v: volatile.Volatile, out: Findings) -> None:
    """Current sessions (system.json) and login history (wtmp, auth logs) into one list."""
    rows: list[dict[str, Any]] = []
    if v.system and isinstance(v.system.get("users"), list):
        src = v.source("system")
        for u in v.system["users"]:
            if isinstance(u, dict):
                rows.append(
                    {
                        "source": "logged in at collection (system.json)",
                        "user": u.get("name"),
                        "from": u.get("host") or u.get("terminal"),
                        "time_ns": to_ns(u.get("started")),
                        **src.ref(),
                    }
                )
    offset = None
    if v.system and isinstance(v.system.get("clocks"), dict):
        offset = v.system["clocks"].get("utc_offset_s")
    for name in logins.LOGIN_FILES:
        for art in ev.artifact_for_source("/" + name):
            data = ev.read_bytes(art["path"], logins.MAX_RECORDS * logins.UTMP.size)
            for r in logins.parse_utmp(data or b""):
                if r["type"] not in ("USER_PROCESS", "BOOT_TIME"):
                    continue
                rows.append(
                    {
                        "source": f"{name} ({'failed login' if name == 'btmp' else r['type']})",
                        "user": r["user"] or "(boot)",
                        "from": r["host"] or r["address"] or r["line"],
                        "time_ns": r["time_ns"],
                        "artifact": art["path"],
                        "seq": art.get("seq"),
                    }
                )
    auth = [
        a
        for a in ev.artifacts.values()
        if str((a.get("source") or {}).get("path", ""))
        .rsplit("/", 1)[-1]
        .startswith(("auth.log", "secure"))
        and not a["path"].endswith((".gz", ".xz", ".bz2", ".zst"))
    ]
    for art in auth:
        data = ev.read_bytes(art["path"], 64 * 1024 * 1024) or b""
        mtime = to_year((art.get("source") or {}).get("stat", {}).get("mtime_ns"))
        for r in logins.parse_auth(data.decode("utf-8", "replace"), mtime, offset):
            rows.append(
                {
                    "source": f"auth log: ssh {r['result']} ({r['method']})",
                    "user": r["user"],
                    "from": r["address"],
                    "time_ns": r["time_ns"],
                    "artifact": art["path"],
                    "seq": art.get("seq"),
                    "line": r["line_no"],
                }
            )
    out.logins = rows
    if not rows and v.system is None and not auth:
        out.gaps["logins"] = "not collected: no system.json, wtmp or auth log preserved"
    for r in rows:
        if r["source"].startswith("auth log: ssh failed"):
            continue
        remote = r.get("from")
        if r["user"] == "(boot)":
            continue
        out.add(
            Finding(
                "logins",
                INFO,
                f"{r['user']} from {remote or 'local'}: {r['source']}",
                [{k: r[k] for k in ("artifact", "seq", "line") if k in r}],
                [],
                r.get("time_ns"),
            )
        )
    failed = [r for r in rows if r["source"].startswith(("auth log: ssh failed", "btmp"))]
    if failed:
        by_addr: dict[str, int] = {}
        for r in failed:
            by_addr[str(r.get("from"))] = by_addr.get(str(r.get("from")), 0) + 1
        top = sorted(by_addr.items(), key=lambda kv: -kv[1])[:10]
        out.add(
            Finding(
                "logins",
                MEDIUM,
                f"{len(failed)} failed login(s) from {len(by_addr)} address(es)",
                [{k: failed[0][k] for k in ("artifact", "seq") if k in failed[0]}],
                [", ".join(f"{a}: {n}" for a, n in top)],
            )
        )


def to_year(ns: Any) -> int:
    try:
        return datetime.fromtimestamp(int(ns) // 1_000_000_000, UTC).year
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC).year


def _recent_files(ev: Evidence, reference_ns: int, out: Findings) -> None:
    window = RECENT_DAYS * 86400 * 1_000_000_000
    recent = []
    for art in ev.artifacts.values():
        st = (art.get("source") or {}).get("stat") or {}
        try:
            mtime = int(st.get("mtime_ns"))
        except (TypeError, ValueError):
            continue
        if mtime >= reference_ns - window:
            recent.append((mtime, art))
    recent.sort(key=lambda t: -t[0])
    if not recent:
        return
    shown = recent[:MAX_LISTED]
    out.add(
        Finding(
            "files",
            INFO,
            f"{len(recent)} preserved file(s) modified since {utc_text(reference_ns - window)}"
            f" ({RECENT_DAYS} days before detection)",
            [{"artifact": art["path"], "seq": art.get("seq")} for _, art in shown],
            [f"{utc_text(m)} {art['source'].get('path')}" for m, art in shown]
            + (
                [f"... and {len(recent) - MAX_LISTED} more (see the timeline)"]
                if len(recent) > MAX_LISTED
                else []
            ),
            shown[0][0],
        )
    )


def _argv_text(r: dict[str, Any]) -> str:
    argv = r.get("argv") or r.get("command")
    return " ".join(map(str, argv)) if isinstance(argv, list) else str(argv or "")


def _actions(ev: Evidence, out: Findings) -> None:
    """What the tool did to the host: isolation (plan, commands, verification, result)
    and every other command it ran. Read from the journal's ``action`` records."""
    actions = ev.of_type("action")
    iso = [r for r in actions if str(r.get("action", "")).startswith("isolation")]
    other = [r for r in actions if r not in iso]
    asked = "--isolate" in (ev.start.get("argv") or [])
    if iso:
        kinds = {str(r.get("action")): r for r in iso}
        applied = kinds.get("isolation-applied") or {}
        verify = kinds.get("isolation-verify") or {}
        status = applied.get("status") or ("failed" if "isolation-error" in kinds else "unknown")
        confirmed = verify.get("confirmed")
        bad = status != "in-force" or confirmed is not True or "isolation-lost" in kinds
        details = [
            f"method {applied.get('method') or (kinds.get('isolation-plan') or {}).get('method')}"
            f", cut at {applied.get('cut_at') or '?'}",
            f"verification: confirmed={confirmed}, rules_ok={verify.get('rules_ok')}, "
            f"probes: "
            + ", ".join(
                f"{p.get('target') or p.get('address') or '?'} {p.get('outcome')}"
                for p in verify.get("probes") or []
                if isinstance(p, dict)
            ),
        ]
        details += [
            f"seq {r.get('seq')}: {_argv_text(r)} (exit {r.get('exit_code', r.get('returncode'))})"
            for r in iso
            if r.get("action") == "isolation-command"
        ][:20]
        if "isolation-error" in kinds:
            details.append(f"error: {kinds['isolation-error'].get('error')}")
        if "isolation-lost" in kinds:
            details.append(f"isolation lost: {kinds['isolation-lost'].get('detail')}")
        if applied.get("release_command"):
            details.append(f"undo with: {applied.get('release_command')}")
        out.add(
            Finding(
                "isolation",
                HIGH if bad else INFO,
                f"network isolation {status}"
                + (", verified" if confirmed is True else ", NOT verified"),
                [{"seq": r.get("seq")} for r in iso],
                details,
                to_ns(applied.get("cut_at")) or to_ns(iso[0].get("time")),
            )
        )
    elif asked:
        out.add(
            Finding(
                "isolation",
                HIGH,
                "isolation was requested (--isolate) but no isolation action is in the journal",
                [{"seq": ev.start.get("seq")}],
                ["treat the host as still connected until someone checks it"],
            )
        )
    else:
        out.gaps["isolation"] = "not applied: the collection ran without --isolate"
    if other:
        out.add(
            Finding(
                "actions",
                INFO,
                f"the tool ran {len(other)} command(s) on the host",
                [{"seq": r.get("seq")} for r in other[:MAX_LISTED]],
                [
                    f"seq {r.get('seq')}: {_argv_text(r) or r.get('action')}"
                    + (f" (exit {r.get('returncode')})" if r.get("returncode") else "")
                    for r in other[:20]
                ],
                to_ns(other[0].get("time")),
            )
        )


def _errors(ev: Evidence, out: Findings) -> None:
    errors = ev.of_type("error")
    if errors:
        out.add(
            Finding(
                "collection",
                INFO,
                f"{len(errors)} item(s) could not be collected",
                [{"seq": r.get("seq")} for r in errors[:MAX_LISTED]],
                [
                    f"seq {r.get('seq')}: {(r.get('source') or {}).get('path', '')} "
                    f"{r.get('reason')}"
                    for r in errors[:10]
                ],
            )
        )


def collect(
    ev: Evidence, v: volatile.Volatile, reference_ns: int, expected_ports: frozenset[int]
) -> Findings:
    out = Findings()
    _processes(ev, v, out)
    _listeners(v, expected_ports, out)
    _connections(v, out)
    _login_rows(ev, v, out)
    _recent_files(ev, reference_ns, out)
    _actions(ev, out)
    _errors(ev, out)
    return out
