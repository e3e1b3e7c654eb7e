"""Findings from the journal and the preserved files' metadata: recently modified files,
what the tool did to the host (isolation and other commands), and what it could not
collect."""

from __future__ import annotations

from typing import Any

from . import words
from .bounded import mapping, text
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
    return words.argv(r.get("argv") or r.get("command"))


def _exit(code: Any) -> str:
    return f" (exit {code})" if isinstance(code, int) and code else ""


STATUS_WORDS = {
    "in-force": "in force",
    "not-confirmed": "applied but not confirmed",
    "failed": "failed",
}


def isolation_state(ev: Evidence) -> dict[str, Any]:
    """Whether the host was cut off, verified, and released (a release recorded into the
    evidence by ``preserve release``), in words as well as values."""
    kinds = {str(r.get("action")): r for r in ev.of_type("action")}
    applied = kinds.get("isolation-applied") or {}
    plan = kinds.get("isolation-plan") or {}
    released = kinds.get("isolation-released")
    status = (
        text(applied.get("status"))
        if applied.get("status")
        else ("failed" if "isolation-error" in kinds else "not applied")
    )
    asked = "--isolate" in (ev.start.get("argv") or [])
    if released:
        failures = released.get("failures") or []
        released_text = (
            f"released at {text(released.get('time'))}"
            + (f" by {text(released['examiner'])}" if released.get("examiner") else "")
            + (f", with {len(failures)} failure(s)" if failures else "")
        )
    else:
        released_text = "released: not recorded in this evidence"
    return {
        "asked": asked,
        "applied": bool(applied),
        "status": status,
        "status_words": STATUS_WORDS.get(status, status),
        "method": applied.get("method") or plan.get("method"),
        "cut_at": applied.get("cut_at"),
        "verified": (kinds.get("isolation-verify") or {}).get("confirmed") is True,
        "release_command": applied.get("release_command"),
        "released_at": released.get("time") if released else None,
        "released_text": released_text,
    }


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
        state = isolation_state(ev)
        kinds = {str(r.get("action")): r for r in iso}
        verify = kinds.get("isolation-verify") or {}
        probes = [p for p in verify.get("probes") or [] if isinstance(p, dict)]
        details = [
            f"method {text(state['method'])}, "
            f"cut at {text(state['cut_at'] or 'an unrecorded time')}",
            "verification: "
            + (
                "the rules were in place"
                if verify.get("rules_ok")
                else "the rules were NOT found in place"
            )
            + (
                "; test connections: "
                + ", ".join(
                    f"{text(p.get('target') or p.get('address') or 'unknown')} "
                    f"{text(p.get('outcome') or 'no outcome')}"
                    for p in probes
                )
                if probes
                else "; no test connections were made"
            ),
        ]
        details += [
            f"seq {r.get('seq')}: {words.argv(r.get('argv') or r.get('command'))}"
            + _exit(r.get("exit_code", r.get("returncode")))
            for r in iso
            if r.get("action") == "isolation-command"
        ][:20]
        if "isolation-error" in kinds:
            details.append(f"error: {text(kinds['isolation-error'].get('error'))}")
        if "isolation-lost" in kinds:
            details.append(f"isolation lost: {text(kinds['isolation-lost'].get('detail'))}")
        details.append(state["released_text"])
        if state["release_command"] and not state["released_at"]:
            details.append(f"undo with: {text(state['release_command'])}")
        bad = state["status"] != "in-force" or not state["verified"] or "isolation-lost" in kinds
        out.add(
            Finding(
                "isolation",
                HIGH if bad else INFO,
                f"network isolation {state['status_words']}"
                + (", verified" if state["verified"] else ", NOT verified"),
                [{"seq": r.get("seq")} for r in iso],
                details,
                to_ns(state["cut_at"]) or to_ns(iso[0].get("time")),
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
                    f"seq {r.get('seq')}: {_argv_text(r) or text(r.get('action'))}"
                    + _exit(r.get("returncode"))
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
                f"{words.plural(ev.journal.counts['error'], 'item')} could not be collected",
                [{"seq": r.get("seq")} for r in errors[:MAX_LISTED]],
                [
                    f"seq {r.get('seq')}: {text(mapping(r.get('source')).get('path', ''))} "
                    f"{text(r.get('reason') or '')}"
                    for r in errors[:10]
                ],
            )
        )
