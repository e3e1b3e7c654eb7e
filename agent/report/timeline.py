"""One merged, sorted UTC timeline: boot, process starts, logins, log first and last
entries, file modifications, and everything the tool did (journal records).

Each event keeps the journal ``seq`` (and artifact path) it comes from. Host-side times
(process starts, file times, log lines) are the host's clock, which the report qualifies
with the clock facts; journal times are the collector's clock reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import logins, volatile
from .evidence import Evidence, source_name, to_ns, utc_text
from .findings import Findings, to_year
from .from_volatile import suspicious_exe

# Lanes, in drawing order (top to bottom).
LANES = ("host", "logins", "processes", "logs", "files", "collection", "custody", "errors")
MAX_FILES = 500
MAX_PROCESSES = 500
MAX_ERRORS = 200
_COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4")


@dataclass
class Event:
    ns: int
    lane: str
    text: str
    seq: int | None = None
    artifact: str | None = None
    notable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": utc_text(self.ns),
            "time_ns": str(self.ns),
            "lane": self.lane,
            "text": self.text,
            "seq": self.seq,
            "artifact": self.artifact,
            "notable": self.notable,
        }


def _journal_events(ev: Evidence) -> list[Event]:
    out = []
    errors = 0
    for r in ev.records:
        ns = to_ns(r.get("time"))
        kind = r.get("type")
        seq = r.get("seq")
        if ns is None:
            continue
        if kind == "start":
            out.append(Event(ns, "collection", "collection started", seq, notable=True))
        elif kind == "seal":
            out.append(Event(ns, "custody", f"journal sealed ({r.get('reason')})", seq))
        elif kind == "transfer":
            out.append(
                Event(ns, "custody", f"custody transferred to {r.get('to')}", seq, notable=True)
            )
        elif kind == "end":
            out.append(Event(ns, "collection", f"collection ended: {r.get('status')}", seq))
        elif kind == "action":
            out.append(
                Event(
                    ns,
                    "collection",
                    f"action: {r.get('action') or r.get('argv')}",
                    seq,
                    notable=True,
                )
            )
        elif kind == "event":
            out.append(Event(ns, "collection", f"event: {r.get('event')}", seq))
        elif kind == "collector":
            out.append(Event(ns, "collection", f"collector {r.get('name')} finished", seq))
        elif kind == "error":
            errors += 1
            if errors <= MAX_ERRORS:
                src = (r.get("source") or {}).get("path", "")
                out.append(Event(ns, "errors", f"error: {src} {r.get('reason')}".strip(), seq))
    return out


def _process_events(v: volatile.Volatile) -> list[Event]:
    src = v.source("processes")
    rows = []
    for p in v.processes or []:
        ns = to_ns(p.get("create_time"))
        if ns is None or not p.get("exe"):  # kernel threads have no executable
            continue
        bad = bool(suspicious_exe(p))
        cmd = p.get("cmdline")
        text = " ".join(map(str, cmd))[:120] if isinstance(cmd, list) and cmd else p.get("name")
        rows.append(
            Event(ns, "processes", f"pid {p.get('pid')} started: {text}", src.seq, src.path, bad)
        )
    rows.sort(key=lambda e: (not e.notable, -e.ns))
    return rows[:MAX_PROCESSES]


def _file_events(ev: Evidence) -> tuple[list[Event], int]:
    rows = []
    for art in ev.artifacts.values():
        st = (art.get("source") or {}).get("stat") or {}
        try:
            ns = int(st.get("mtime_ns"))
        except (TypeError, ValueError):
            continue
        rows.append(
            Event(ns, "files", f"modified: {source_name(art)}", art.get("seq"), art["path"])
        )
    rows.sort(key=lambda e: -e.ns)
    return rows[:MAX_FILES], max(0, len(rows) - MAX_FILES)


def _log_events(ev: Evidence, offset: int | None) -> list[Event]:
    """First and last timestamped line of each preserved text log."""
    rows = []
    for art in ev.artifacts.values():
        name = str((art.get("source") or {}).get("path", ""))
        is_log = art.get("collector") == "logs" or "/log/" in name or name.endswith(".log")
        if not is_log or art["path"].endswith(_COMPRESSED):
            continue
        if name.rsplit("/", 1)[-1] in logins.LOGIN_FILES or "/journal/" in name:
            continue
        size = int(art.get("size") or 0)
        head = ev.read_bytes(art["path"], 8192) or b""
        if b"\0" in head[:512] or not head:
            continue
        year = to_year((art.get("source") or {}).get("stat", {}).get("mtime_ns"))
        first = _first_time(head.decode("utf-8", "replace").splitlines(), year, offset)
        tail = _tail(ev, art["path"], size)
        last = _first_time(reversed(tail.decode("utf-8", "replace").splitlines()), year, offset)
        if first is not None:
            rows.append(Event(first, "logs", f"first entry: {name}", art.get("seq"), art["path"]))
        if last is not None and last != first:
            rows.append(Event(last, "logs", f"last entry: {name}", art.get("seq"), art["path"]))
    return rows


def _tail(ev: Evidence, rel: str, size: int) -> bytes:
    data = ev.read_bytes(rel, 64 * 1024 * 1024) if size <= 64 * 1024 * 1024 else None
    return (data or b"")[-8192:]


def _first_time(lines: Any, year: int, offset: int | None) -> int | None:
    for n, line in enumerate(lines):
        if n > 50:
            return None
        ns = logins.line_time(line, year, offset)
        if ns is not None:
            return ns
    return None


def build(ev: Evidence, v: volatile.Volatile, findings: Findings) -> dict[str, Any]:
    events = _journal_events(ev)
    boot = (v.system or {}).get("boot_time") or (ev.start.get("host") or {}).get("boot_time")
    if to_ns(boot):
        events.append(
            Event(to_ns(boot), "host", "host booted", v.source("system").seq if v.system else 0)
        )
    events += _process_events(v)
    for r in findings.logins:
        if r.get("time_ns"):
            lane = "host" if r.get("user") == "(boot)" else "logins"
            failed = "failed" in r["source"] or r["source"].startswith("btmp")
            text = (
                "boot record"
                if lane == "host"
                else f"{'failed login' if failed else 'login'} {r['user']} from {r.get('from')}"
            )
            events.append(
                Event(
                    r["time_ns"], lane, f"{text} ({r['source']})", r.get("seq"), r.get("artifact")
                )
            )
    offset = ((v.system or {}).get("clocks") or {}).get("utc_offset_s")
    events += _log_events(ev, offset if isinstance(offset, int) else None)
    files, files_left_out = _file_events(ev)
    events += files
    events.sort(key=lambda e: (e.ns, LANES.index(e.lane) if e.lane in LANES else 99))
    return {
        "events": [e.to_dict() for e in events],
        "lanes": list(LANES),
        "left_out": {"files": files_left_out},
        "clock_note": (
            "Host times (boot, process starts, file times, log lines) come from the host's "
            "clock; see the clock facts under Host. Syslog lines without a zone are "
            + (
                f"converted with the host's UTC offset ({offset} s)."
                if isinstance(offset, int)
                else "read as UTC (the host's offset was not collected)."
            )
        ),
    }
