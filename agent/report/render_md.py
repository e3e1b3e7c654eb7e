"""Markdown: readable as plain text in a terminal, and as a document when rendered."""

from __future__ import annotations

from typing import Any

from .limits import files_line, limit_text

MAX_TIMELINE_ROWS = 400


def _esc(text: Any) -> str:
    return str(text if text is not None else "-").replace("|", "\\|").replace("\n", " ")


def _ref(ref: dict[str, Any]) -> str:
    parts = []
    if ref.get("artifact"):
        parts.append(f"`{ref['artifact']}`")
    if ref.get("seq") is not None:
        parts.append(f"seq {ref['seq']}")
    if ref.get("line"):
        parts.append(f"line {ref['line']}")
    return " ".join(parts)


def render(r: dict[str, Any]) -> str:
    v = r["verification"]
    out: list[str] = []
    banner = f"> **{v['status']}**: {v['warning']}" if not v["ok"] else ""

    def section(title: str) -> None:
        out.append(f"\n## {title}\n")
        if banner:
            out.append(f"{banner}\n")

    c, k, h = r["collection"], r["custody"], r["host"]
    out.append(f"# Incident evidence report: {_esc(h.get('hostname'))}, case {_esc(k['case'])}\n")
    if v["ok"]:
        out.append(
            f"**Verification: INTACT.** {v['files_checked']} files checked, {v['records']} "
            f"journal records, sealed through seq {v['sealed_through_seq']}; "
            f"chain head `{v['chain_head']}`.\n"
        )
    else:
        out.append(f"{banner}\n")
        out.append(f"**Verification problems ({v['problem_count']}):**\n")
        out += [f"- {_esc(p)}" for p in v["problems"][:50]]
        out.append("")
    out.append(
        f"Generated {r['generated']} by {k['report_tool']} from `{_esc(r['evidence_dir'])}`.\n"
    )

    section("Custody")
    out += [
        f"- Case: {_esc(k['case'])}; examiner: {_esc(k['examiner'])}; note: {_esc(k['note'])}",
        f"- Host: {_esc(k['host'])}; tool: {_esc(k['tool'])} (code SHA-256 "
        f"`{_esc(k['tool_code_sha256'])}`), Python {_esc(k.get('python'))}"
        + (f", kit {_esc(k['kit'])}" if k.get("kit") else ""),
        f"- Signer fingerprint: `{_esc(k['signer_fingerprint_grouped'])}`"
        + (" (ephemeral key)" if k.get("ephemeral_key") else ""),
        f"- Collected {_esc(c['started'])} to {_esc(c['ended'])}: {_esc(c['status'])}; "
        f"counts {_esc(c['counts'])}",
        "",
        "| # | holder | since | key | seq |",
        "|---|---|---|---|---|",
    ]
    for n, holder in enumerate(k["holders"], 1):
        out.append(
            f"| {n} | {_esc(holder['name'])} | {_esc(holder['since'])} | "
            f"`{holder['fingerprint'][:16]}...` | {holder['seq']} |"
        )
    out += ["", "Seals:", ""]
    out += [
        f"- seq {s['seq']} {_esc(s.get('time'))} {_esc(s.get('reason'))} "
        f"(`{str(s.get('signer'))[:16]}...`)"
        for s in k["seals"]
    ]

    section("Host")
    clock = h["clock"]
    out += [
        f"- {_esc(h['hostname'])}: {_esc(h['os'])}, kernel {_esc(h['kernel'])} "
        f"{_esc(h['architecture'])}, machine id {_esc(h['machine_id'])}",
        f"- Booted {_esc(h['boot_time'])}",
        f"- Clock: NTP synchronised {_esc(clock['ntp_synchronised'])}, max error "
        f"{_esc(clock['ntp_max_error_us'])} us, offset {_esc(clock['ntp_offset'])}, time zone "
        f"{_esc(clock['timezone'])}" + (f" ({clock['note']})" if clock.get("note") else ""),
        f"- Addresses: {_esc(', '.join(h['addresses']) or 'not collected')}",
        f"- Listening: {len(h['listening'])} socket(s)"
        + (f"; not collected: {', '.join(h['not_collected'])}" if h["not_collected"] else ""),
    ]
    for s in h["listening"][:40]:
        out.append(
            f"  - {s['proto']} {s['laddr']}:{s['lport']} pid {s['pid']} {_esc(s['process'])}"
        )

    section("Findings")
    if not r["findings"]:
        out.append("No findings.")
    for f in r["findings"]:
        when = f" ({f['time']})" if f.get("time") else ""
        out.append(f"- **[{f['severity'].upper()}] {f['category']}**: {_esc(f['title'])}{when}")
        if f.get("unverified"):
            out.append(
                f"  - **UNVERIFIED: rests on {', '.join(f['unverified'])}, which did not pass "
                "verification**"
            )
        out += [f"  - {_esc(d)}" for d in f["details"]]
        refs = "; ".join(_ref(x) for x in f["refs"][:5] if _ref(x))
        if refs:
            out.append(f"  - evidence: {refs}")
    for cat, why in r["not_assessed"].items():
        out.append(f"- **[NOT ASSESSED] {cat}**: {why}")
    for limit in r["limits"]:
        out.append(f"- **[NOT EXAMINED]** {_esc(limit_text(limit))}")

    section("Timeline (UTC)")
    t = r["timeline"]
    out.append(f"_{t['clock_note']}_\n")
    out += ["| time | lane | what | evidence |", "|---|---|---|---|"]
    events = t["events"]
    for e in events[:MAX_TIMELINE_ROWS]:
        mark = "**" if e["notable"] else ""
        out.append(
            f"| {e['time']} | {e['lane']} | {mark}{_esc(e['text'])[:140]}{mark} | {_ref(e)} |"
        )
    if len(events) > MAX_TIMELINE_ROWS:
        out.append(f"\n({len(events) - MAX_TIMELINE_ROWS} more events in the JSON report)")
    if t["left_out"]["files"]:
        out.append(f"\n{_esc(files_line(t))}")

    section("5W1H worksheet")
    for w in r["worksheet"]:
        out.append(f"**{w['question']}**\n")
        out += [f"- {_esc(x)}" for x in w["evidence"]]
        out += [f"- **{_esc(g)}**" for g in w["gaps"]]
        out.append("")

    d = r["deadlines"]
    section("Deadlines checklist")
    out.append(f"**{d['disclaimer']}**\n")
    out.append(f"Counted from {d['detected_at']} ({d['detected_at_source']}).\n")
    for item in d["items"]:
        rng = f" (from {item['earliest']})" if item.get("earliest") else ""
        due = (
            f"due {item['due']}{rng}, {item['state_at_report_time']}"
            if item["due"]
            else "no fixed date"
        )
        out.append(
            f"- [ ] **{_esc(item['what'])}** to {_esc(item['to'])} [{_esc(item['jurisdiction'])}]: "
            f"{due}. {_esc(item['due_text'])}. "
            f"Applies if: {_esc(item['applies_if'])}. Basis: {_esc(item['basis'])}."
        )
    return "\n".join(out) + "\n"
