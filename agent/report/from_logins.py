"""Findings about logins: sessions at collection time (``system.json``), login records
in preserved ``wtmp``/``btmp``/``utmp`` files, and sshd lines in preserved auth logs."""

from __future__ import annotations

from typing import Any

from collectors import utmp

from . import logins as parse
from . import volatile
from .evidence import Evidence, to_ns
from .findings import INFO, MEDIUM, Finding, Findings, to_year


def logins(ev: Evidence, v: volatile.Volatile, out: Findings) -> None:
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
    for name in parse.LOGIN_FILES:
        for art in ev.artifact_for_source("/" + name):
            data = ev.read_bytes(art["path"], parse.MAX_RECORDS * utmp.RECORD.size)
            for r in parse.parse_utmp(data or b""):
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
        for r in parse.parse_auth(data.decode("utf-8", "replace"), mtime, offset):
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
