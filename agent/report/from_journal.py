"""Findings from the journal and the preserved files' metadata: recently modified files,
what the tool did to the host (isolation and other commands), and what it could not
collect."""

from __future__ import annotations

from typing import Any

from .bounded import mapping
from .evidence import Evidence, to_ns, utc_text
from .findings import HIGH, INFO, MAX_LISTED, RECENT_DAYS, Finding, Findings


def recent_since(reference_ns: int) -> int:
    """The start of the recent-files window: ``RECENT_DAYS`` before detection."""
    return reference_ns - RECENT_DAYS * 86400 * 1_000_000_000


def recent_files(ev: Evidence, reference_ns: int, out: Findings) -> None:
    """Files modified in the window before detection: counted over every artifact while
    the journal was read (``load(since=recent_since)``), the newest of them listed."""
    since = recent_since(reference_ns)
    count = ev.index.files.recent
    shown = [f for f in ev.index.newest() if f.ns >= since][:MAX_LISTED]
    if not count or not shown:
        return
    out.add(
        Finding(
            "files",
            INFO,
            f"{count} preserved file(s) modified since {utc_text(since)}"
            f" ({RECENT_DAYS} days before detection)",
            [{"artifact": f.path, "seq": f.seq} for f in shown],
            [f"{utc_text(f.ns)} {f.name}" for f in shown]
            + (
                [f"... and {count - MAX_LISTED} more (see the timeline)"]
                if count > MAX_LISTED
                else []
            ),
            shown[0].ns,
        )
    )


def _argv_text(r: dict[str, Any]) -> str:
    argv = r.get("argv") or r.get("command")
    return " ".join(map(str, argv)) if isinstance(argv, list) else str(argv or "")


def actions(ev: Evidence, out: Findings) -> None:
    """What the tool did to the host: isolation (plan, commands, verification, result)
    and every other command it ran. Read from the journal's ``action`` records."""
    actions = ev.of_type("action")
    if ev.journal.left_out("action"):
        ev.not_examined(
            None,
            f"{ev.journal.left_out('action')} action record(s) of the journal after the first "
            f"{len(actions)} were not examined",
            "the report keeps a bounded number of them; read the journal for the rest",
        )
    iso = [r for r in actions if str(r.get("action", "")).startswith("isolation")]
    other = [r for r in actions if not str(r.get("action", "")).startswith("isolation")]
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


def errors(ev: Evidence, out: Findings) -> None:
    errors = ev.of_type("error")
    if errors:
        out.add(
            Finding(
                "collection",
                INFO,
                f"{ev.journal.counts['error']} item(s) could not be collected",
                [{"seq": r.get("seq")} for r in errors[:MAX_LISTED]],
                [
                    f"seq {r.get('seq')}: {mapping(r.get('source')).get('path', '')} "
                    f"{r.get('reason')}"
                    for r in errors[:10]
                ],
            )
        )
