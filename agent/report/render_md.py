"""Markdown: readable as plain text in a terminal, and as a document when rendered.

Every value from the evidence goes through ``words.md`` (the one printable rule, then
Markdown's own characters escaped), so a process name holding ``<script>``, a pipe or an
escape sequence stays text: no tag, no broken table, no byte a terminal obeys. Only
values this tool made itself (hashes, fingerprints, counts) are written as they are."""

from __future__ import annotations

from typing import Any

from . import timeline_table
from .limits import files_line, limit_text
from .words import md, plural, seal_reason

MAX_TIMELINE_ROWS = 400


def _hex(value: Any) -> str:
    """A hash or fingerprint this tool computed, in a code span (hex only, else escaped)."""
    s = str(value or "")
    return f"`{s}`" if s and all(c in "0123456789abcdef " for c in s) else md(value)


def _ref(ref: dict[str, Any]) -> str:
    parts = []
    if ref.get("artifact"):
        parts.append(md(ref["artifact"]))
    if isinstance(ref.get("seq"), int):
        parts.append(f"seq {ref['seq']}")
    if isinstance(ref.get("line"), int):
        parts.append(f"line {ref['line']}")
    return " ".join(parts)


def _clock(clock: dict[str, Any]) -> str:
    ntp = clock.get("ntp_synchronised")
    sync = {True: "synchronised", False: "NOT synchronised", None: "state unknown"}.get(ntp, "?")
    err = clock.get("ntp_max_error_us")
    err_text = f", max error {err / 1e6:.1f} s" if isinstance(err, (int, float)) else ""
    note = f" ({md(clock['note'])})" if clock.get("note") else ""
    return f"NTP {sync}{err_text}, time zone {md(clock.get('timezone'))}{note}"


def render(r: dict[str, Any]) -> str:
    v = r["verification"]
    out: list[str] = []
    banner = f"> **{v['status']}**: {v['warning']}" if not v["ok"] else ""

    def section(title: str) -> None:
        out.append(f"\n## {title}\n")
        if banner:
            out.append(f"{banner}\n")

    c, k, h = r["collection"], r["custody"], r["host"]
    out.append(f"# Incident evidence report: {md(h.get('hostname'))}, case {md(k['case'])}\n")
    if banner:  # a failed verification is said before anything else
        out.append(f"{banner}\n")
    section("Summary")
    out.append(" ".join(md(s) for s in r["summary"]) + "\n")
    if v["ok"]:
        out.append(
            f"**Verification: INTACT.** {plural(v['files_checked'], 'file')} checked, "
            f"{plural(v['records'], 'journal record')}, sealed through seq "
            f"{v['sealed_through_seq']}; chain head {_hex(v['chain_head'])}.\n"
        )
    else:
        out.append(f"**Verification problems ({v['problem_count']}):**\n")
        out += [f"- {md(p)}" for p in v["problems"][:50]]
        out.append("")
    out.append(f"Generated {r['generated']} by {k['report_tool']} from {md(r['evidence_dir'])}.\n")

    section("Findings")
    if not r["findings"]:
        out.append("No findings.")
    for f in r["findings"]:
        when = f" ({f['time']})" if f.get("time") else ""
        label = "DEGRADED VIEW" if f.get("degraded") else md(f["category"])
        out.append(f"- **[{md(f['severity'].upper())}] {label}**: {md(f['title'])}{when}")
        if f.get("why"):
            out.append(f"  - _Why it matters_: {md(f['why'])}")
        if f.get("unverified"):
            out.append(
                f"  - **UNVERIFIED: rests on {md(', '.join(f['unverified']))}, which did not "
                "pass verification**"
            )
        out += [f"  - {md(d)}" for d in f["details"]]
        refs = "; ".join(_ref(x) for x in f["refs"][:5] if _ref(x))
        if refs:
            out.append(f"  - evidence: {refs}")
    for cat, why in r["not_assessed"].items():
        out.append(f"- **[NOT ASSESSED] {md(cat)}**: {md(why)}")
    for limit in r["limits"]:
        out.append(f"- **[NOT EXAMINED]** {md(limit_text(limit))}")

    d = r["deadlines"]
    section("Deadlines checklist")
    out.append(f"**{md(d['disclaimer'])}**\n")
    out.append(
        f"Counted from {d['detected_at']} ({md(d['detected_at_source'])}), on {md(d['clock'])}.\n"
    )
    for item in d["items"]:
        rng = f" (from {item['earliest']})" if item.get("earliest") else ""
        due = (
            f"due {item['due']}{rng}, {item['state_at_report_time']}"
            if item["due"]
            else "no fixed date"
        )
        out.append(
            f"- [ ] **{md(item['what'])}** to {md(item['to'])} [{md(item['jurisdiction'])}]: "
            f"{due}. {md(item['due_text'])}. "
            f"Applies if: {md(item['applies_if'])}. Basis: {md(item['basis'])}."
        )

    section("Timeline (UTC)")
    t = r["timeline"]
    out.append(f"_{md(t['clock_note'])}_\n")
    rows = timeline_table.rows(t["events"], MAX_TIMELINE_ROWS)
    for title, group in (("Notable events", rows.notable), ("Everything else", rows.other)):
        out += [f"**{title}**\n", "| time | lane | what | evidence |", "|---|---|---|---|"]
        out += [
            f"| {row.time} | {md(row.lane)} | {md(row.text)} | {_ref(row.ref)} |" for row in group
        ]
        out.append("" if group else "| - | - | none | - |\n")
    out += [f"\n{md(line)}" for line in rows.notes]
    if t["left_out"]["files"]:
        out.append(f"\n{md(files_line(t))}")

    section("5W1H worksheet")
    for w in r["worksheet"]:
        out.append(f"**{md(w['question'])}**\n")
        out += [f"- {md(x)}" for x in w["evidence"]]
        out += [f"- **{md(g)}**" for g in w["gaps"]]
        out.append("")

    section("Custody")
    iso = r["isolation"]
    out += [
        f"- Case: {md(k['case'])}; examiner: {md(k['examiner'])}; note: {md(k['note'])}",
        f"- Host: {md(k['host'])}; tool: {md(k['tool'])} (code SHA-256 "
        f"{_hex(k['tool_code_sha256'])}), Python {md(k.get('python'))}"
        + (f", kit {md(k['kit'])}" if k.get("kit") else ""),
        f"- Signer fingerprint: {_hex(k['signer_fingerprint_grouped'])}"
        + (" (ephemeral key)" if k.get("ephemeral_key") else ""),
        f"- Collected {md(c['started'])} to {md(c['ended'])}: {md(c['status'])}; "
        f"{md(c['counts_text'])}",
        f"- Isolation: {md(iso['status_words'])}; {md(iso['released_text'])}",
        "",
        "| # | holder | since | key | seq |",
        "|---|---|---|---|---|",
    ]
    for n, holder in enumerate(k["holders"], 1):
        out.append(
            f"| {n} | {md(holder['name'])} | {md(holder['since'])} | "
            f"{_hex(str(holder['fingerprint'])[:16])}... | {md(holder['seq'])} |"
        )
    out += ["", "Seals:", ""]
    out += [
        f"- seq {md(s['seq'])} {md(s.get('time'))} {md(seal_reason(s.get('reason')))} "
        f"({_hex(str(s.get('signer'))[:16])}...)"
        for s in k["seals"]
    ]

    section("Host")
    out += [
        f"- {md(h['hostname'])}: {md(h['os'])}, kernel {md(h['kernel'])} "
        f"{md(h['architecture'])}, machine id {md(h['machine_id'])}",
        f"- Booted {md(h['boot_time'])}",
        f"- Clock: {_clock(h['clock'])}",
        f"- Addresses: {md(', '.join(h['addresses']) or 'not collected')}",
        f"- Listening: {plural(len(h['listening']), 'socket')}"
        + (f"; not collected: {md(', '.join(h['not_collected']))}" if h["not_collected"] else ""),
    ]
    for s in h["listening"][:40]:
        owner = f"pid {s['pid']} {md(s['process'])}" if s.get("pid") is not None else "no process"
        out.append(f"  - {md(s['proto'])} {md(s['laddr'])}:{md(s['lport'])}, {owner}")
    return "\n".join(out) + "\n"
