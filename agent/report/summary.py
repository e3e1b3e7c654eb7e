"""The report's first paragraph: three to six sentences a manager can read aloud.

Built from the report's own data (so it never says what the details do not): the host
and when it was collected, whether the evidence is intact, the most serious findings in
words, whether the host is cut off from the network, and the next reporting deadline."""

from __future__ import annotations

from typing import Any

from .bounded import text
from .words import plural

MAX_NAMED = 3  # findings named in the summary


def _short(value: Any, limit: int = 160) -> str:
    s = text(value, 4096)
    return s if len(s) <= limit else s[: limit - 3].rstrip() + "..."


def _collected(r: dict[str, Any]) -> str:
    c, k, h = r["collection"], r["custody"], r["host"]
    host = _short(h.get("hostname") or k.get("host") or "an unnamed host", 80)
    system = f" ({_short(h['os'], 60)})" if h.get("os") else ""
    started = str(c.get("started") or "")[:19].replace("T", " ")
    who = f" by {_short(k['examiner'], 60)}" if k.get("examiner") else ""
    case = f" for case {_short(k['case'], 60)}" if k.get("case") else ", with no case number"
    when = f" on {started} UTC" if started else " at an unrecorded time"
    return (
        f"This report covers the host {host}{system}, whose evidence was collected"
        f"{when}{who}{case}."
    )


def _intact(r: dict[str, Any]) -> str:
    v = r["verification"]
    status = str(r["collection"].get("status") or "")
    if not v["ok"]:
        return (
            f"The evidence FAILED verification ({plural(v['problem_count'], 'problem')}): part "
            "of it was altered, removed or added after collection, so nothing in this report "
            "may be relied on without checking it."
        )
    finished = (
        "the collection finished completely"
        if status == "complete"
        else f"the collection ended as '{_short(status, 60)}'"
    )
    return (
        f"The evidence is intact: all {plural(v['files_checked'], 'file')} and the signed "
        f"journal check out, and {finished}."
    )


def _findings(r: dict[str, Any]) -> str:
    found = r["findings"]
    degraded = [f for f in found if f.get("degraded")]
    high = [f for f in found if f["severity"] == "high" and not f.get("degraded")]
    parts = []
    if degraded:
        views = sorted({str(f["title"]).split(")", 1)[0].split("(", 1)[-1] for f in degraded})
        parts.append(
            f"The tool's views of the host disagreed ({', '.join(views)}): something on the "
            "host may be hiding from ordinary tools, so treat it as compromised."
        )
    if high:
        named = "; ".join(_short(f["title"], 140) for f in high[:MAX_NAMED])
        more = f" (and {len(high) - MAX_NAMED} more)" if len(high) > MAX_NAMED else ""
        parts.append(
            f"The most serious {'finding is' if len(high) == 1 else 'findings are'}: {named}{more}."
        )
    elif not degraded:
        medium = [f for f in found if f["severity"] in ("medium", "low")]
        parts.append(
            f"Nothing was flagged as serious; {plural(len(medium), 'finding')} deserve a look."
            if medium
            else "Nothing was flagged as serious."
        )
    return " ".join(parts)


def _isolation(r: dict[str, Any]) -> str:
    iso = r["isolation"]
    if not iso["applied"]:
        if iso["asked"]:
            return (
                "Isolation was asked for but is not in the journal: treat the host as still "
                "connected to the network."
            )
        return "The host was not cut off from the network by this collection."
    verified = "verified" if iso["verified"] else "NOT verified"
    cut = str(iso.get("cut_at") or "")[:19].replace("T", " ")
    released = (
        f", and released at {str(iso['released_at'])[:19].replace('T', ' ')} UTC"
        if iso["released_at"]
        else "; its release is not recorded in this evidence"
    )
    return (
        f"The host was cut off from the network at {cut or 'an unrecorded time'} UTC "
        f"({iso['status_words']}, {verified}){released}."
    )


def _deadline(r: dict[str, Any]) -> str:
    d = r["deadlines"]
    open_items = [
        i for i in d["items"] if i.get("due") and "PASSED" not in i["state_at_report_time"]
    ]
    passed = [i for i in d["items"] if i.get("due") and "PASSED" in i["state_at_report_time"]]
    if open_items:
        nxt = min(open_items, key=lambda i: i["due"])
        line = (
            f"The next reporting deadline (if it applies): {_short(nxt['what'], 80)}, to "
            f"{_short(str(nxt['to']).split(' (', 1)[0], 60)}, by {nxt['due']} "
            f"({nxt['state_at_report_time']})"
        )
    else:
        line = "No reporting deadline in the checklist is still open"
    if passed:
        line += f"; {plural(len(passed), 'deadline')} may already have passed"
    return f"{line}, counted from {d['detected_at']} on {d['clock']}."


def sentences(r: dict[str, Any]) -> list[str]:
    """The summary, one sentence (or two short ones) per item, in reading order."""
    return [s for s in (_collected(r), _intact(r), _findings(r), _isolation(r), _deadline(r)) if s]
