"""The 5W1H worksheet: what the evidence shows for each question, and the gaps that only
people can fill (marked, never guessed)."""

from __future__ import annotations

from typing import Any

GAP = "GAP"


def build(report: dict[str, Any]) -> list[dict[str, Any]]:
    host = report["host"]
    findings = report["findings"]
    high = [f for f in findings if f["severity"] == "high"]
    remote = [f for f in findings if f["category"] == "connections"]
    logins = [f for f in findings if f["category"] == "logins"]
    listeners = [f for f in findings if f["category"] == "listening"]
    timed = sorted(f["time"] for f in findings if f.get("time") and f["severity"] != "info")
    c = report["collection"]

    def row(question: str, shows: list[str], gaps: list[str]) -> dict[str, Any]:
        return {
            "question": question,
            "evidence": shows or ["(nothing in this evidence)"],
            "gaps": [f"{GAP}: {g}" for g in gaps],
        }

    return [
        row(
            "When",
            [
                f"detected (reference for deadlines): {report['deadlines']['detected_at']}",
                f"evidence collected {c['started']} to {c['ended'] or '(unfinished)'}",
                *([f"earliest suspicious item: {timed[0]}"] if timed else []),
                f"host booted {host.get('boot_time') or 'unknown'}",
            ],
            [
                "when did the intrusion begin? (logs, earlier backups, other hosts)",
                "when did the organisation first become aware, and who noticed?",
            ],
        ),
        row(
            "Where",
            [
                f"host {host.get('hostname')} ({host.get('os') or host.get('system') or '?'}), "
                f"addresses {', '.join(host.get('addresses') or []) or 'not collected'}",
            ],
            ["which other systems, accounts or sites are involved?"],
        ),
        row(
            "What",
            [f["title"] for f in high[:10]]
            + [f"{len(findings)} finding(s) in total, {len(high)} high"],
            [
                "what data was on the host, and was any of it accessed or taken?",
                "how many people's personal data is affected (the PPC threshold is 1,000)?",
            ],
        ),
        row(
            "Who",
            [f["title"] for f in logins[:10]] + [f["title"] for f in remote[:5]],
            [
                "who is the attacker (an address is not a person)?",
                "who in the organisation is responsible for the response and the reports?",
            ],
        ),
        row(
            "How",
            list(dict.fromkeys(f["title"] for f in (high + listeners)))[:10],
            ["how did the attacker get in (entry vector)? which vulnerability or credential?"],
        ),
        row(
            "Why",
            [],
            ["motive (money, data, disruption): only people and further investigation can say"],
        ),
    ]
