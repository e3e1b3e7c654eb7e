"""HTML: one self-contained file (inline CSS and SVG, no scripts, no external assets)
that opens offline and prints; a failed verification is stamped on every printed page."""

from __future__ import annotations

from typing import Any

from . import svg, timeline_table, words
from .limits import files_line, limit_text

MAX_TIMELINE_ROWS = 1000

CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#111;max-width:1140px;margin:1.5em auto;
padding:0 1em}
h1{font-size:22px;margin:.2em 0}h2{font-size:17px;border-bottom:2px solid #111;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 6px;
text-align:left;vertical-align:top;font-size:12.5px}th{background:#f3f4f6}
code{font:12px ui-monospace,monospace;word-break:break-all}
.ok{background:#dcfce7;border:2px solid #15803d;padding:.6em 1em;font-weight:bold}
.fail{background:#fee2e2;border:3px solid #b91c1c;color:#7f1d1d;padding:.6em 1em;font-weight:bold}
.sev-high{color:#b91c1c;font-weight:bold}.sev-medium{color:#b45309;font-weight:bold}
.sev-info{color:#374151}.gap{color:#b91c1c;font-weight:bold}.notable{font-weight:bold}
.legal{border-left:4px solid #b45309;padding-left:.6em}
.stamp{display:none}svg{max-width:100%;height:auto}
@media print{body{margin:0;max-width:none}.stamp{display:block;position:fixed;top:0;left:0;right:0;
text-align:center;background:#fee2e2;color:#7f1d1d;border-bottom:2px solid #b91c1c;font-weight:bold}
section{break-inside:auto}h2{break-after:avoid}svg{max-width:100%;height:auto}
.has-stamp{padding-top:2.2em}}
"""


def _e(x: Any) -> str:
    """Evidence text for HTML: the one printable rule, then entity-escaped."""
    return words.html(x)


def _ref(ref: dict[str, Any]) -> str:
    parts = []
    if ref.get("artifact"):
        parts.append(f"<code>{_e(ref['artifact'])}</code>")
    if ref.get("seq") is not None:
        parts.append(f"seq&nbsp;{_e(ref['seq'])}")
    if ref.get("line"):
        parts.append(f"line&nbsp;{_e(ref['line'])}")
    return " ".join(parts)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _clock(clock: dict[str, Any]) -> str:
    ntp = clock.get("ntp_synchronised")
    sync = "synchronised" if ntp is True else "NOT synchronised" if ntp is False else None
    err = clock.get("ntp_max_error_us")
    return (
        f"NTP {sync or 'state unknown'}"
        + (f", max error {err / 1e6:.1f} s" if isinstance(err, (int, float)) else "")
        + f", time zone {_e(clock.get('timezone'))}"
        + (f" ({_e(clock['note'])})" if clock.get("note") else "")
    )


def render(r: dict[str, Any]) -> str:
    v, c, k, h = r["verification"], r["collection"], r["custody"], r["host"]
    fail = "" if v["ok"] else f'<p class="fail">{_e(v["status"])}: {_e(v["warning"])}</p>'
    out = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>Evidence report {_e(h.get('hostname'))} {_e(k['case'])}</title>",
        f"<style>{CSS}</style></head><body{' class=has-stamp' if fail else ''}>",
    ]
    if fail:
        out.append(f'<div class="stamp">{_e(v["status"])}: see the verification section</div>')
    out.append(f"<h1>Incident evidence report: {_e(h.get('hostname'))}, case {_e(k['case'])}</h1>")
    out.append(fail)
    out.append(
        '<section class="summary"><h2>Summary</h2><p>'
        + " ".join(_e(x) for x in r["summary"])
        + "</p></section>"
    )
    if v["ok"]:
        out.append(
            f'<p class="ok">Verification: INTACT. {v["files_checked"]} files checked, '
            f"{v['records']} journal records, sealed through seq {v['sealed_through_seq']}. "
            f"Chain head <code>{_e(v['chain_head'])}</code></p>"
        )
    else:
        out.append("<ul>" + "".join(f"<li>{_e(p)}</li>" for p in v["problems"][:100]) + "</ul>")
    out.append(
        f"<p>Generated {_e(r['generated'])} by {_e(k['report_tool'])} from "
        f"<code>{_e(r['evidence_dir'])}</code></p>"
    )

    sections: dict[str, str] = {}

    def section(title: str, body: str) -> None:
        sections[title] = f"<section><h2>{title}</h2>{fail}{body}</section>"

    custody = (
        _table(
            ["case", "examiner", "host", "tool", "signer fingerprint", "collected"],
            [
                [
                    _e(k["case"]),
                    _e(k["examiner"]),
                    _e(k["host"]),
                    f"{_e(k['tool'])}<br><code>{_e(k['tool_code_sha256'])}</code>",
                    f"<code>{_e(k['signer_fingerprint_grouped'])}</code>"
                    + (" (ephemeral)" if k.get("ephemeral_key") else ""),
                    f"{_e(c['started'])} to {_e(c['ended'])}<br>{_e(c['status'])}; "
                    f"{_e(c['counts_text'])}<br>isolation {_e(r['isolation']['status_words'])}; "
                    f"{_e(r['isolation']['released_text'])}",
                ]
            ],
        )
        + "<h3>Holders</h3>"
        + _table(
            ["#", "holder", "since", "key fingerprint", "seq", "note"],
            [
                [
                    str(n),
                    _e(x["name"]),
                    _e(x["since"]),
                    f"<code>{_e(x['fingerprint'])}</code>",
                    _e(x["seq"]),
                    _e(x["note"]),
                ]
                for n, x in enumerate(k["holders"], 1)
            ],
        )
        + "<h3>Seals</h3>"
        + _table(
            ["seq", "time", "reason", "signer"],
            [
                [
                    _e(s["seq"]),
                    _e(s.get("time")),
                    _e(words.seal_reason(s.get("reason"))),
                    f"<code>{_e(str(s.get('signer'))[:16])}...</code>",
                ]
                for s in k["seals"]
            ],
        )
    )
    section("Custody", custody)

    clock = h["clock"]
    host = _table(
        ["fact", "value"],
        [
            ["host", f"{_e(h['hostname'])} (machine id {_e(h['machine_id'])})"],
            ["system", f"{_e(h['os'])}, kernel {_e(h['kernel'])} {_e(h['architecture'])}"],
            ["booted", _e(h["boot_time"])],
            [
                "clock",
                _clock(clock),
            ],
            ["addresses", _e(", ".join(h["addresses"]) or "not collected")],
            ["not collected", _e(", ".join(h["not_collected"]) or "-")],
        ],
    ) + _table(
        ["proto", "address", "port", "pid", "process", "executable"],
        [
            [
                _e(s["proto"]),
                _e(s["laddr"]),
                _e(s["lport"]),
                _e(s["pid"] if s.get("pid") is not None else "no process"),
                _e(s["process"]),
                _e(s["exe"]),
            ]
            for s in h["listening"]
        ],
    )
    section("Host", host)

    rows = (
        [
            [
                f'<span class="sev-{_e(f["severity"])}">{_e(f["severity"].upper())}</span>',
                "<b>DEGRADED VIEW</b>" if f.get("degraded") else _e(f["category"]),
                _e(f["title"])
                + (f"<br><i>Why it matters: {_e(f['why'])}</i>" if f.get("why") else "")
                + (
                    f'<br><span class="gap">UNVERIFIED: rests on {_e(", ".join(f["unverified"]))}'
                    ", which did not pass verification</span>"
                    if f.get("unverified")
                    else ""
                )
                + "".join(f"<br><small>{_e(d)}</small>" for d in f["details"]),
                _e(f.get("time") or ""),
                "<br>".join(_ref(x) for x in f["refs"][:5]),
            ]
            for f in r["findings"]
        ]
        + [
            ['<span class="gap">NOT ASSESSED</span>', _e(cat), _e(why), "", ""]
            for cat, why in r["not_assessed"].items()
        ]
        + [
            ['<span class="gap">NOT EXAMINED</span>', "limits", _e(limit_text(x)), "", ""]
            for x in r["limits"]
        ]
    )
    section("Findings", _table(["severity", "category", "finding", "time", "evidence"], rows))

    t = r["timeline"]
    events = t["events"]
    rows_ = timeline_table.rows(events, MAX_TIMELINE_ROWS)
    tables = "".join(
        f"<h3>{title}</h3>"
        + _table(
            ["time (UTC)", "lane", "what", "evidence"],
            [[_e(x.time), _e(x.lane), _e(x.text), _ref(x.ref)] for x in group]
            or [["-", "-", "none", "-"]],
        )
        for title, group in (("Notable events", rows_.notable), ("Everything else", rows_.other))
    )
    more = "".join(f"<p>{_e(n)}</p>" for n in rows_.notes) + (
        f"<p>{_e(files_line(t))}</p>" if t["left_out"]["files"] else ""
    )
    section(
        "Timeline at a glance",
        svg.render(t, c["started"], c["ended"]) + f"<p><small>{_e(t['clock_note'])}</small></p>",
    )
    section(
        "Timeline (UTC)",
        tables + more,
    )

    ws = "".join(
        f"<tr><th>{_e(w['question'])}</th><td><ul>"
        + "".join(f"<li>{_e(x)}</li>" for x in w["evidence"])
        + "".join(f'<li class="gap">{_e(g)}</li>' for g in w["gaps"])
        + "</ul></td></tr>"
        for w in r["worksheet"]
    )
    section("5W1H worksheet", f"<table>{ws}</table>")

    d = r["deadlines"]
    drows = [
        [
            "&#9744;",
            f"<b>{_e(i['what'])}</b><br>to {_e(i['to'])}<br><small>{_e(i['jurisdiction'])}; "
            f"{_e(i['basis'])}</small>",
            f"<b>{_e(i['due'] or 'no fixed date')}</b>"
            + (f"<br>from {_e(i['earliest'])}" if i.get("earliest") else "")
            + f"<br>{_e(i['state_at_report_time'])}",
            f"{_e(i['due_text'])}<br><small>applies if: {_e(i['applies_if'])}</small>",
        ]
        for i in d["items"]
    ]
    section(
        "Deadlines checklist",
        f'<p class="legal"><b>{_e(d["disclaimer"])}</b><br>Counted from '
        f"{_e(d['detected_at'])} ({_e(d['detected_at_source'])}), on {_e(d['clock'])}.</p>"
        + _table(["done", "report", "due (UTC)", "notes"], drows),
    )
    order = [
        "Timeline at a glance",
        "Findings",
        "Deadlines checklist",
        "5W1H worksheet",
        "Custody",
        "Host",
        "Timeline (UTC)",
    ]
    out += [sections[name] for name in order]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
