"""Ansible filters of the fleet run, on the controller: each host's registered results
become one summary row, the rows become the CSV and the Markdown table.

Here, not in Jinja, so that every way a host can fail (unreachable, no tmpfs, kit
modified, refused by the server, killed) is spelled out once and tested. Stdlib only:
this runs under the controller's Ansible Python."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
from typing import Any

COLUMNS = (
    "host",
    "hostname",
    "status",
    "exit_code",
    "evidence_dir",
    "fingerprint",
    "chain_head",
    "kit",
    "cleaned",
    "run",
    "detail",
)
STATUS_BY_EXIT = {0: "collected", 1: "partial", 2: "refused", 4: "isolation failed"}
DETAIL_LIMIT = 300
# A lost link (exit 1, no summary): the directory it names and, when the server came
# back within --sink-reconnect, the chain head of the seal made there (docs/remote.md).
LOST_DIR = re.compile(r"the evidence directory (\S+) was lost")
RESEALED = re.compile(
    r"sealed in custody\.continued\.jsonl, up to seq \d+, chain head ([0-9a-f]{64})"
)


def _last_line(*texts: Any) -> str:
    """The last non-empty line of the first text that has one: preserve and the bundle
    say what went wrong in one line on stderr."""
    for text in texts:
        lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1][:DETAIL_LIMIT]
    return ""


def _failed_contact(result: dict[str, Any] | None) -> str | None:
    if not result:
        return None
    if result.get("unreachable"):
        return _last_line(result.get("msg")) or "unreachable"
    return None


def _json(text: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(str(text or "").strip() or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _killed(rc: int) -> str | None:
    """A shell reports a signal as 128+N (ssh passes it on); a local runner as -N."""
    number = -rc if rc < 0 else rc - 128 if 128 < rc < 160 else None
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _run_row(row: dict[str, Any], run: dict[str, Any]) -> None:
    rc = int(run.get("rc", -1))
    row["exit_code"] = rc
    summary = _json(run.get("stdout"))
    if summary:
        row["evidence_dir"] = summary.get("evidence_dir", "")
        row["fingerprint"] = summary.get("fingerprint", "")
        row["chain_head"] = summary.get("chain_head", "")
    killed = _killed(rc)
    if killed:
        row["status"] = "killed"
        row["detail"] = f"preserve was killed ({killed}); verify the prefix on the server"
        return
    row["status"] = STATUS_BY_EXIT.get(rc, "failed")
    if rc == 1 and not summary:
        row["status"] = "lost"  # no summary: the evidence directory was lost mid-run
        stderr = str(run.get("stderr") or "")
        where, sealed = LOST_DIR.search(stderr), RESEALED.search(stderr)
        row["evidence_dir"] = where.group(1) if where else ""
        row["chain_head"] = sealed.group(1) if sealed else ""  # fleet-summary pins it
    if rc != 0:
        row["detail"] = _last_line(run.get("stderr"), run.get("stdout"))
    elif summary and summary.get("status") not in (None, "complete"):
        row["detail"] = f"collection {summary.get('status')}"


def preserve_fleet_row(
    host: str,
    run_id: str,
    unpack: dict[str, Any] | None,
    selfcheck: dict[str, Any] | None,
    run: dict[str, Any] | None,
    cleanup: dict[str, Any] | None,
) -> dict[str, Any]:
    """One host's row from the results its tasks registered (None: the task did not run)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    row["host"], row["run"] = host, run_id
    row["status"], row["exit_code"] = "failed", ""
    lost = _failed_contact(unpack)
    if lost is not None or not unpack:
        row["status"], row["detail"] = "unreachable", lost or "no contact"
        return row
    if int(unpack.get("rc", -1)) != 0:
        row["status"] = "not run"
        row["detail"] = _last_line(unpack.get("stderr"), unpack.get("msg"), unpack.get("stdout"))
        row["cleaned"] = _cleaned(cleanup, default="nothing unpacked")
        return row
    row["cleaned"] = _cleaned(cleanup)
    for line in str(unpack.get("stdout") or "").splitlines():
        if line.startswith("hostname: "):
            row["hostname"] = line.removeprefix("hostname: ").strip()
    check = _json((selfcheck or {}).get("stdout"))
    if _failed_contact(selfcheck) is not None or selfcheck is None:
        row["status"] = "unreachable"
        row["detail"] = _failed_contact(selfcheck) or "selfcheck did not run"
        return row
    if int(selfcheck.get("rc", -1)) != 0:
        row["status"], row["kit"] = "kit modified", "MODIFIED"
        problems = (check or {}).get("problems") or []
        row["detail"] = "kit self-check failed: " + (
            str(problems[0]) if problems else _last_line(selfcheck.get("stderr"))
        )
        return row
    row["kit"] = "intact"
    if _failed_contact(run) is not None or run is None or run.get("skipped"):
        row["status"] = "unreachable"
        row["detail"] = _failed_contact(run) or "preserve did not run"
        return row
    _run_row(row, run)
    return row


def _cleaned(cleanup: dict[str, Any] | None, default: str = "unknown") -> str:
    if not cleanup or cleanup.get("skipped"):
        return default
    if cleanup.get("unreachable"):
        return "NO (unreachable)"
    return "yes" if int(cleanup.get("rc", -1)) == 0 else "NO"


def preserve_fleet_rows(hostvars: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Every target host gets a row, also one that never set its own (removed from the
    play before its last task)."""
    rows = []
    for name, facts in zip(names, hostvars, strict=True):
        row = facts.get("preserve_row") if hasattr(facts, "get") else None
        if not row:
            row = dict.fromkeys(COLUMNS, "")
            row.update(host=name, status="no result", detail="the host reported nothing")
        rows.append(dict(row))
    return rows


def preserve_fleet_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def markdown_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def preserve_fleet_markdown(rows: list[dict[str, Any]]) -> str:
    return markdown_table(rows, COLUMNS)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "preserve_fleet_row": preserve_fleet_row,
            "preserve_fleet_rows": preserve_fleet_rows,
            "preserve_fleet_csv": preserve_fleet_csv,
            "preserve_fleet_markdown": preserve_fleet_markdown,
        }
