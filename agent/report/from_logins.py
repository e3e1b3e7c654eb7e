"""Findings about logins: sessions at collection time (``system.json``), login records
in preserved ``wtmp``/``btmp``/``utmp`` files, and sshd lines in preserved auth logs.

Every record and line is examined (``logins``); what is kept is bounded: failed logins
are counted by address and the newest listed up to a number, other logins listed (each a
finding) up to a larger one. What is found but not listed is noted in the report."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import logins as parse
from . import volatile
from .evidence import Evidence, lines, to_ns
from .findings import INFO, MEDIUM, Finding, Findings, to_year
from .journald_logins import journal_rows

MAX_LISTED = 10_000  # logins and sessions listed (the newest), each a finding
MAX_FAILED_LISTED = 1_000  # failed logins listed (the newest; all are counted)
MAX_ADDRESSES = 10_000  # addresses failed logins are counted by
OTHER = "(other addresses)"


def _failed(row: dict[str, Any]) -> bool:
    return str(row["source"]).startswith(("auth log: ssh failed", "journal: ssh failed", "btmp"))


@dataclass
class _Rows:
    """Login rows within the bounds above, in the order found: of more than the bound,
    the newest are kept (the ones nearest the incident); failed ones are all counted."""

    failed: int = 0
    first_failed: dict[str, Any] | None = None
    by_addr: Counter[str] = field(default_factory=Counter)
    unlisted: Counter[tuple[str | None, bool]] = field(default_factory=Counter)
    _kept: dict[bool, list[tuple[int, int, dict[str, Any]]]] = field(
        default_factory=lambda: {True: [], False: []}
    )
    _order: int = 0

    def add(self, row: dict[str, Any]) -> None:
        failed = _failed(row)
        if failed:
            self.failed += 1
            self.first_failed = self.first_failed or row
            addr = str(row.get("from"))
            if addr in self.by_addr or len(self.by_addr) < MAX_ADDRESSES:
                self.by_addr[addr] += 1
            else:
                self.by_addr[OTHER] += 1
        self._order += 1
        ns = row.get("time_ns")
        entry = (ns if isinstance(ns, int) else -(2**63), self._order, row)
        kept = self._kept[failed]
        if len(kept) < (MAX_FAILED_LISTED if failed else MAX_LISTED):
            heapq.heappush(kept, entry)
            return
        oldest = heapq.heappushpop(kept, entry)[2]
        self.unlisted[(oldest.get("artifact"), failed)] += 1

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The kept rows, in the order they were found."""
        return [
            row for _, _, row in sorted(self._kept[True] + self._kept[False], key=lambda e: e[1])
        ]


def _utmp_rows(ev: Evidence, name: str, art: dict[str, Any], rows: _Rows) -> None:
    with ev.stored(art["path"]) as stream:
        if stream is None:
            return
        done = 0
        while chunk := stream.read(parse.UTMP_CHUNK):
            for r in parse.parse_utmp(chunk):
                if r["type"] not in ("USER_PROCESS", "BOOT_TIME"):
                    continue
                rows.add(
                    {
                        "source": f"{name} ({'failed login' if name == 'btmp' else r['type']})",
                        "user": r["user"] or "(boot)",
                        "from": r["host"] or r["address"] or r["line"],
                        "time_ns": r["time_ns"],
                        "artifact": art["path"],
                        "seq": art.get("seq"),
                    }
                )
            done += len(chunk)
            if done >= parse.MAX_UTMP_BYTES and stream.read(1):
                ev.not_examined(
                    art["path"],
                    f"the records after the first {done} bytes were not read",
                    f"the report reads at most {parse.MAX_UTMP_BYTES // 2**30} GiB of one "
                    "login file",
                )
                return


def _auth_rows(ev: Evidence, art: dict[str, Any], offset: Any, rows: _Rows) -> None:
    year = to_year((art.get("source") or {}).get("stat", {}).get("mtime_ns"))
    long = 0
    with ev.stored(art["path"]) as stream:
        if stream is None:
            return
        for number, line, whole in lines(stream, parse.MAX_LINE):
            long += not whole
            if number % 4096 == 0 and stream.tell() > parse.MAX_AUTH_BYTES:
                ev.not_examined(
                    art["path"],
                    f"lines {number} to the end were not read",
                    f"the report reads at most {parse.MAX_AUTH_BYTES // 2**30} GiB of one auth log",
                )
                break
            r = parse.auth_row(line, number, year, offset)
            if r is None:
                continue
            rows.add(
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
    if long:
        ev.not_examined(
            art["path"],
            f"the rest of {long} line(s) longer than {parse.MAX_LINE // 1024} KiB was not examined",
            f"a line is examined in its first {parse.MAX_LINE // 1024} KiB",
        )


def logins(ev: Evidence, v: volatile.Volatile, out: Findings) -> None:
    """Current sessions (system.json) and login history (wtmp, auth logs) into one list."""
    found = _Rows()
    if v.system and isinstance(v.system.get("users"), list):
        src = v.source("system")
        for u in v.system["users"]:
            if isinstance(u, dict):
                found.add(
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
        offset = offset if isinstance(offset, int) else None
    for name in parse.LOGIN_FILES:
        for art in ev.artifact_for_source("/" + name):
            _utmp_rows(ev, name, art, found)
    auth = ev.index.of_kind("auth")
    for art in auth:
        _auth_rows(ev, art, offset, found)
    journal = [] if auth else ev.index.of_kind("journal")  # the same lines: not twice
    for art in journal:
        journal_rows(ev, art, found.add)
    for (artifact, failed), n in found.unlisted.items():
        limit = MAX_FAILED_LISTED if failed else MAX_LISTED
        ev.not_examined(
            artifact,
            f"{n} older {'failed ' if failed else ''}login(s) were found but not listed",
            f"the report lists the newest {limit} {'failed ' if failed else ''}logins"
            + (" (all of them are counted by address)" if failed else ""),
        )
    rows = found.rows
    out.logins = rows
    if not rows and v.system is None and not auth and not journal:
        out.gaps["logins"] = (
            "not collected: no system.json, wtmp, auth log or parsed journal preserved"
        )
    for r in rows:
        if r["source"].startswith(("auth log: ssh failed", "journal: ssh failed")):
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
    if found.failed and found.first_failed is not None:
        first = found.first_failed
        top = found.by_addr.most_common(10)
        many = OTHER in found.by_addr
        addresses = f"more than {MAX_ADDRESSES}" if many else str(len(found.by_addr))
        out.add(
            Finding(
                "logins",
                MEDIUM,
                f"{found.failed} failed login(s) from {addresses} address(es)",
                [{k: first[k] for k in ("artifact", "seq") if k in first}],
                [", ".join(f"{a}: {n}" for a, n in top)],
            )
        )
