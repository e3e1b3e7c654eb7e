"""One merged, sorted UTC timeline: boot, process starts, logins, log first and last
entries, file modifications, and everything the tool did (journal records).

Each event keeps the journal ``seq`` (and artifact path) it comes from. Host-side times
(process starts, file times, log lines) are the host's clock, which the report qualifies
with the clock facts; journal times are the collector's clock reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collectors.redact import redact

from . import logins, volatile
from .bounded import mapping
from .evidence import Evidence, to_ns, utc_text
from .findings import Findings, to_year
from .from_volatile import suspicious_exe

# Lanes, in drawing order (top to bottom).
LANES = (
    "host",
    "logins",
    "processes",
    "persistence",
    "logs",
    "files",
    "findings",
    "collection",
    "custody",
    "errors",
)
# Where a change makes a program start again by itself (or changes who may log in): a
# file here modified in the week before the collection is a notable persistence change.
PERSISTENCE = (
    "/etc/cron", "/var/spool/cron", "/etc/systemd/", "/lib/systemd/system/",
    "/usr/lib/systemd/system/", "/etc/init.d/", "/etc/rc.local", "/etc/ld.so.preload",
    "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers", "/etc/profile",
    "/etc/bash.bashrc", "/etc/ssh/sshd_config", "/etc/pam.d/", "/etc/udev/rules.d/",
)  # fmt: skip
PERSISTENCE_NAMES = ("/.ssh/authorized_keys", "/.bashrc", "/.profile", "/.bash_profile")
WEEK_NS = 7 * 86400 * 1_000_000_000
MAX_FILES = 500
MAX_PROCESSES = 500
# The times a calendar (and so the report) can show, with a day's margin for time zones.
FIRST_NS = to_ns("0001-01-02") or 0
LAST_NS = to_ns("9999-12-30") or 0


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
    """The collection, custody and errors lanes, made while the journal was read."""
    return [Event(e.ns, e.lane, e.text, e.seq, notable=e.notable) for e in ev.journal.events]


def _process_events(v: volatile.Volatile) -> list[Event]:
    src = v.source("processes")
    rows = []
    for p in v.processes or []:
        ns = to_ns(p.get("create_time"))
        if ns is None or not p.get("exe"):  # kernel threads have no executable
            continue
        bad = bool(suspicious_exe(p))
        cmd = p.get("cmdline")
        text = redact(" ".join(map(str, cmd)))[0][:120] if isinstance(cmd, list) and cmd else None
        text = text or p.get("name")
        rows.append(
            Event(ns, "processes", f"pid {p.get('pid')} started: {text}", src.seq, src.path, bad)
        )
    rows.sort(key=lambda e: (not e.notable, -e.ns))
    return rows[:MAX_PROCESSES]


def _file_events(ev: Evidence) -> tuple[list[Event], int]:
    """The newest ``MAX_FILES`` file modifications; the rest are counted (``files_summary``).
    A change to a persistence file in the week before the collection is notable."""
    since = (to_ns(ev.start.get("time")) or 0) - WEEK_NS
    rows = []
    for f in ev.index.newest()[:MAX_FILES]:
        name = str(f.name)
        # anywhere in the path: a tree preserved with --path (a mounted disk) has them too
        persistent = any(p in name for p in PERSISTENCE) or name.endswith(PERSISTENCE_NAMES)
        lane = "persistence" if persistent else "files"
        rows.append(
            Event(f.ns, lane, f"modified: {name}", f.seq, f.path, persistent and f.ns >= since)
        )
    return rows, max(0, ev.index.files.count - MAX_FILES)


def _files_summary(ev: Evidence) -> dict[str, Any]:
    """Every preserved file with a source modification time, in aggregate."""
    f = ev.index.files
    return {
        "count": f.count,
        "bytes": f.bytes,
        "oldest": utc_text(f.oldest_ns) if f.oldest_ns is not None else None,
        "newest": utc_text(f.newest_ns) if f.newest_ns is not None else None,
        "listed": min(f.count, MAX_FILES),
    }


def _log_events(ev: Evidence, offset: int | None) -> list[Event]:
    """First and last timestamped line of each preserved text log (the first
    ``artifactindex.CAPS['logs']`` of them; the report notes the others)."""
    rows = []
    for art in ev.index.of_kind("logs"):
        name = str((art.get("source") or {}).get("path", ""))
        head = ev.read_bytes(art["path"], 8192) or b""
        if b"\0" in head[:512] or not head:
            continue
        year = to_year((art.get("source") or {}).get("stat", {}).get("mtime_ns"))
        first = _first_time(head.decode("utf-8", "replace").splitlines(), year, offset)
        tail = ev.read_tail(art["path"], 8192)
        last = _first_time(reversed(tail.decode("utf-8", "replace").splitlines()), year, offset)
        if first is not None:
            rows.append(Event(first, "logs", f"first entry: {name}", art.get("seq"), art["path"]))
        if last is not None and last != first:
            rows.append(Event(last, "logs", f"last entry: {name}", art.get("seq"), art["path"]))
    left = ev.index.left_out["logs"]
    if left:
        ev.not_examined(
            None,
            f"the first and last entries of {left} more log file(s) were not read",
            f"the timeline reads those of the first {len(ev.index.kinds.get('logs', {}))} logs",
        )
    return rows


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
    boot = (v.system or {}).get("boot_time") or mapping(ev.start.get("host")).get("boot_time")
    booted = to_ns(boot)
    if booted:
        events.append(
            Event(booted, "host", "host booted", v.source("system").seq if v.system else 0)
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
            # a successful login is notable (labelled); failed ones are many, and counted
            # in the findings
            events.append(
                Event(
                    r["time_ns"],
                    lane,
                    f"{text} ({r['source']})",
                    r.get("seq"),
                    r.get("artifact"),
                    lane == "logins" and not failed,
                )
            )
    offset = mapping((v.system or {}).get("clocks")).get("utc_offset_s")
    events += _log_events(ev, offset if isinstance(offset, int) else None)
    files, files_left_out = _file_events(ev)
    events += files
    drawable = [e for e in events if FIRST_NS <= e.ns <= LAST_NS]
    if len(drawable) < len(events):
        ev.not_examined(
            None,
            f"{len(events) - len(drawable)} timeline event(s) dated outside years 1 to 9999 "
            "were left out",
            "no calendar holds such a time: it is forged or damaged",
        )
    events = drawable
    events.sort(key=lambda e: (e.ns, LANES.index(e.lane) if e.lane in LANES else 99))
    return {
        "events": [e.to_dict() for e in events],
        "lanes": list(LANES),
        "left_out": {"files": files_left_out, "journal": ev.journal.events_left_out},
        "files_summary": _files_summary(ev),
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
