"""From an evidence directory to the report's data: one plain dict that every renderer
(HTML, Markdown, JSON) draws from, so the three always say the same thing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from manifests.signing import grouped

from .. import __version__
from . import clock as report_clock
from . import (
    deadlines,
    findings,
    from_events,
    from_journal,
    from_logins,
    from_volatile,
    summary,
    timeline,
    volatile,
    words,
    worksheet,
)
from .bounded import clip, mapping, text
from .evidence import Evidence, load, to_ns, utc_text

MAX_PROBLEMS = 1_000  # verification problems listed (verify lists every one)
MAX_LISTED_CUSTODY = 1_000  # holders and seals listed


def _verification(ev: Evidence) -> dict[str, Any]:
    r = ev.verification
    files = r.file_problems
    problems = list(r.problems[:MAX_PROBLEMS]) + [
        f"{f.status}: {f.path}" + (f" ({f.detail})" if f.detail else "")
        for f in files[: max(0, MAX_PROBLEMS - len(r.problems))]
    ]
    total = len(r.problems) + len(files)
    if total > len(problems):
        problems.append(f"... and {total - len(problems)} more: run verify for all of them")
    if ev.journal_problem:
        problems.append(ev.journal_problem)
        total += 1
    return {
        "ok": r.ok and not ev.journal_problem,
        "status": "INTACT" if r.ok and not ev.journal_problem else "FAILED VERIFICATION",
        "problems": problems,
        "problem_count": total,
        "files_checked": r.files_checked,
        "records": r.records,
        "sealed_through_seq": r.sealed_through,
        "chain_head": r.chain_head,
        "complete": r.complete,
        "warning": None
        if r.ok
        else (
            "This evidence FAILED verification: some of it was altered, removed or added "
            "after collection, or the run did not finish. Nothing below can be relied on "
            "without checking each item against the problems listed."
        ),
    }


def _custody(ev: Evidence) -> dict[str, Any]:
    if ev.journal.left_out("transfer"):
        ev.not_examined(
            None,
            f"{ev.journal.left_out('transfer')} transfer record(s) after the first "
            f"{len(ev.of_type('transfer'))} were not listed",
            "the report lists a bounded number; verify lists every holder",
        )
    start = ev.start
    tool = mapping(start.get("tool"))
    r = ev.verification
    return {
        "case": start.get("case"),
        "examiner": start.get("examiner"),
        "note": start.get("note"),
        "host": mapping(start.get("host")).get("hostname"),
        "tool": f"{tool.get('name', '?')} {tool.get('version', '?')}",
        "python": tool.get("python"),
        "kit": start.get("kit") or tool.get("kit"),
        "tool_code_sha256": tool.get("code_sha256"),
        "report_tool": f"preserve {__version__}",
        "signer_fingerprint": r.signer_fingerprint,
        "signer_fingerprint_grouped": grouped(r.signer_fingerprint)
        if r.signer_fingerprint
        else None,
        "ephemeral_key": mapping(start.get("signer")).get("ephemeral"),
        "argv": start.get("argv"),
        "holders": [h.__dict__ for h in r.holders[:MAX_LISTED_CUSTODY]],
        "seals": [clip(x, 4096) for x in r.seals[:MAX_LISTED_CUSTODY]],
        "transfers": [
            {
                "seq": t.get("seq"),
                "time": t.get("time"),
                "from": t.get("from_name") or t.get("from"),
                "to": t.get("to"),
                "fingerprint": t.get("fingerprint"),
                "note": t.get("note"),
            }
            for t in ev.of_type("transfer")
        ],
    }


def _host(ev: Evidence, v: volatile.Volatile) -> dict[str, Any]:
    start_host = mapping(ev.start.get("host"))
    s = v.system or {}
    clocks = mapping(s.get("clocks"))
    ntp = mapping(clocks.get("ntp"))
    addresses = []
    interfaces = (v.network or {}).get("interfaces") or {}
    for name, entry in interfaces.items() if isinstance(interfaces, dict) else []:
        found = mapping(entry).get("addresses")
        for a in found if isinstance(found, list) else []:
            if isinstance(a, dict) and a.get("family") in ("inet", "inet6"):
                addresses.append(f"{a.get('address')} ({name})")
    listening = volatile.listening(v)
    kernel = mapping(s.get("kernel"))
    return {
        "hostname": s.get("hostname") or start_host.get("hostname"),
        "machine_id": s.get("machine_id") or start_host.get("machine_id"),
        "os": mapping(s.get("os_release")).get("PRETTY_NAME") or start_host.get("system"),
        "kernel": kernel.get("release") or start_host.get("release"),
        "architecture": s.get("architecture") or start_host.get("machine"),
        "boot_time": s.get("boot_time") or start_host.get("boot_time"),
        "clock": {
            "collector_clock": ev.start.get("clock"),
            "ntp_synchronised": ntp.get("synchronised") if ntp else None,
            "ntp_max_error_us": ntp.get("max_error_us") if ntp else None,
            "ntp_offset": ntp.get("offset") if ntp else None,
            "timezone": clocks.get("localtime_link"),
            "utc_offset_s": clocks.get("utc_offset_s"),
            "note": None if ntp else "not collected: no system.json clock facts",
        },
        "addresses": addresses,
        "interfaces": sorted(interfaces) if isinstance(interfaces, dict) else [],
        "listening": [
            {k: x.get(k) for k in ("proto", "laddr", "lport", "pid", "process", "exe")}
            for x in listening or []
        ],
        "not_collected": [
            k for k in ("processes", "sockets", "network", "system") if getattr(v, k) is None
        ],
        "sources": {k: s.ref() for k, s in v.sources.items()},
    }


def _findings(
    ev: Evidence, v: volatile.Volatile, reference_ns: int, expected_ports: frozenset[int]
) -> findings.Findings:
    """Every category in order; each adds findings, or a gap saying why it could not."""
    out = findings.Findings()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("degraded", lambda: from_events.degraded(ev, out)),
        ("collector findings", lambda: from_events.collected(ev, out)),
        ("processes", lambda: from_volatile.processes(ev, v, out)),
        ("listening", lambda: from_volatile.listeners(v, expected_ports, out)),
        ("connections", lambda: from_volatile.connections(v, out)),
        ("logins", lambda: from_logins.logins(ev, v, out)),
        ("files", lambda: from_journal.recent_files(ev, reference_ns, out)),
        ("actions", lambda: from_journal.actions(ev, out)),
        ("collection", lambda: from_journal.errors(ev, out)),
    ]
    for category, step in steps:
        try:
            step()
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
            # Evidence that holds what no collector writes (a forged or damaged file):
            # the category says so instead of the whole report failing.
            out.gaps[category] = (
                f"could not be assessed: the evidence holds values of unexpected types "
                f"({type(e).__name__}: {text(str(e), 200)})"
            )
    return out


def _mark_unverified(report: dict[str, Any], ev: Evidence) -> None:
    """A finding that rests on a file which failed verification, or on a journal record
    no valid seal covers, says so itself, so it cannot be quoted without its caveat."""
    cited = {r.get("artifact") for f in report["findings"] for r in f["refs"]}
    bad = {f.path for f in ev.verification.file_problems if f.path in cited}
    sealed = ev.verification.sealed_through
    for f in report["findings"]:
        broken: list[str] = []
        for r in f["refs"]:
            seq = r.get("seq")
            unsealed = isinstance(seq, int) and (sealed is None or seq > sealed)
            if r.get("artifact") in bad or unsealed:
                r["verified"] = False
                what = r.get("artifact") or f"journal seq {seq}"
                broken.append(what + (" (unsealed record)" if unsealed else ""))
        f["unverified"] = sorted(set(broken))


def _reference(
    started: Any, detected_at: str | None, now_ns: int, offset_ns: int = 0
) -> tuple[int, str]:
    """When deadlines count from, and why: --detected-at, else the collection start (on
    the responder's clock when a reference time was given: ``offset_ns``)."""
    if detected_at:
        detected_ns = to_ns(detected_at)
        if detected_ns is None:
            raise ValueError(f"--detected-at: cannot read {detected_at!r} as a time")
        return detected_ns, "--detected-at"
    if to_ns(started) is not None:
        return (to_ns(started) or 0) + offset_ns, "collection start (default)"
    # no readable start record (damaged journal): say so rather than guess quietly
    return now_ns, "report time: the journal has no readable start time"


def build(
    evidence_dir: Path,
    detected_at: str | None = None,
    deadlines_file: Path | None = None,
    expected_ports: frozenset[int] = findings.EXPECTED_PORTS,
    now_ns: int | None = None,
    chain_head: str | None = None,
) -> dict[str, Any]:
    now_ns = now_ns or time.time_ns()
    duties = deadlines.load(deadlines_file)
    ev = load(
        evidence_dir,
        since=lambda start: from_journal.recent_since(
            _reference(start.get("time"), detected_at, now_ns)[0]
        ),
        chain_head=chain_head,
    )
    v = volatile.load(ev)
    started = ev.start.get("time")
    end = ev.end
    clock = report_clock.view(ev)
    detected_ns, source = _reference(started, detected_at, now_ns, clock.offset_ns)
    found = _findings(ev, v, detected_ns, expected_ports)
    report: dict[str, Any] = {
        "format": "preserve-report/1",
        "generated": utc_text(now_ns),
        "evidence_dir": str(evidence_dir),
        "verification": _verification(ev),
        "collection": {
            "started": started,
            "ended": end.get("time") if end else None,
            "status": end.get("status") if end else "unfinished (no end record)",
            "counts": end.get("counts") if end else None,
            "counts_text": words.counts(end.get("counts")) if end else "not recorded",
            "collectors": ev.start.get("collectors"),
        },
        "custody": _custody(ev),
        "host": _host(ev, v),
        "isolation": from_journal.isolation_state(ev),
        "findings": [f.to_dict() for f in found.sorted()],
        "not_assessed": found.gaps,
        "logins": [
            {
                **{k: r.get(k) for k in ("source", "user", "from", "artifact", "seq")},
                "time": utc_text(r["time_ns"]) if r.get("time_ns") else None,
            }
            for r in found.logins
        ],
        "timeline": timeline.build(ev, v, found),
        "deadlines": {
            "disclaimer": deadlines.DISCLAIMER,
            "detected_at": utc_text(detected_ns),
            "detected_at_source": source,
            "clock": "the time given with --detected-at" if detected_at else clock.words,
            "clock_trusted": clock.trusted,
            "items": deadlines.checklist(duties, detected_ns, now_ns),
        },
    }
    report["limits"] = ev.limits
    _mark_unverified(report, ev)
    report["worksheet"] = worksheet.build(report)
    # first in every rendering, built last: it only restates what the details say
    report = {"summary": summary.sentences(report), **report}
    return report
