"""``preserve fleet-summary SUMMARY.csv --evidence DIR``: after a fleet run, on the
evidence server, verify every host's evidence and print the fleet table with verdicts.

The CSV is the one the fleet playbook (packaging/ansible) wrote on the controller: one
row per host, with the evidence directory, the signer's fingerprint and the chain head
each host printed. Each directory is verified pinned to both. A host whose run was
killed printed nothing: its directory is found on the server by its hostname and the
run's start, and verified as a prefix (intact up to its last seal)."""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from manifests.errors import NotEvidenceError, UsageError
from manifests.verify import VerificationResult, verify_evidence

from ..console import printable

EXIT_OK, EXIT_FAILED = 0, 1
STAMP = re.compile(r"-(\d{8}T\d{6}Z)(?:-\d+)?$")
EXPECTS_EVIDENCE = ("collected", "partial", "killed", "lost", "isolation failed")
# What verify says of a run killed half-way, and nothing else: the prefix holds.
KILLED_RUN_PROBLEMS = ("unsealed tail after seq", "the collection did not finish")
TABLE = ("host", "hostname", "status", "evidence", "verdict")


@dataclass
class Row:
    fields: dict[str, str]
    evidence: Path | None = None
    found_by_name: bool = False
    verdict: str = ""
    ok: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            **self.fields,
            "evidence": str(self.evidence) if self.evidence else None,
            "verdict": self.verdict,
            "ok": self.ok,
        }


def _read(summary: Path) -> list[dict[str, str]]:
    try:
        with summary.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"cannot read the fleet summary {summary}: {e}") from e
    if not rows or "host" not in rows[0] or "evidence_dir" not in rows[0]:
        raise UsageError(
            f"{summary} is not a fleet summary (no host and evidence_dir columns)",
            hint="give the CSV the fleet playbook wrote (preserve_summary)",
        )
    return rows


def _locate(fields: dict[str, str], evidence: Path) -> tuple[Path | None, bool]:
    """The host's directory under ``evidence``: by the name it printed, or (a run that
    printed nothing) the first ``<hostname>-<stamp>`` made since the run began."""
    url = fields.get("evidence_dir", "")
    if url:
        return evidence / url.rstrip("/").rpartition("/")[2], False
    hostname, run = fields.get("hostname", ""), fields.get("run", "")
    started = run.partition("-")[0]
    if not hostname or not started:
        return None, False
    candidates = []
    for path in evidence.glob(f"{glob_escape(hostname)}-*"):
        m = STAMP.search(path.name)
        if m and path.name[: m.start()] == hostname and m.group(1) >= started:
            candidates.append((m.group(1), path))
    return (min(candidates)[1], True) if candidates else (None, False)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _prefix_intact(result: VerificationResult) -> bool:
    """A killed run: signed, pinned key, nothing changed or added; only the tail after
    the last seal (and the copies in flight) missing."""
    if result.sealed_through is None or "mismatch" in (result.pin, result.chain_pin):
        return False
    if any(f.status in ("changed", "unexpected") for f in result.file_problems):
        return False
    return all(p.startswith(KILLED_RUN_PROBLEMS) for p in result.problems)


def judge(row: Row) -> None:
    fields = row.fields
    if row.evidence is None or not row.evidence.exists():
        expected = fields.get("status") in EXPECTS_EVIDENCE
        row.verdict = "MISSING on the server" if expected else "no evidence (not collected)"
        return
    try:
        result = verify_evidence(
            row.evidence,
            pin_fingerprint=fields.get("fingerprint") or None,
            chain_head=fields.get("chain_head") or None,
        )
    except NotEvidenceError as e:
        row.verdict = f"NOT EVIDENCE: {e}"
        return
    found = " (found on the server by its name)" if row.found_by_name else ""
    if result.ok:
        pinned = " (signer and chain head pinned)" if fields.get("chain_head") else ""
        row.verdict, row.ok = f"intact{pinned}{found}", fields.get("status") == "collected"
    elif _prefix_intact(result):
        row.verdict = (
            f"prefix intact: sealed through seq {result.sealed_through}, "
            f"{len(result.file_problems)} incomplete{found}"
        )
    else:
        first = (result.problems or [f"{f.path}: {f.status}" for f in result.file_problems])[0]
        row.verdict = f"FAILED verify: {first}"


def _table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(TABLE) + " |", "|" + "---|" * len(TABLE)]
    for row in rows:
        cells = [
            row.fields.get("host", ""),
            row.fields.get("hostname", ""),
            row.fields.get("status", ""),
            row.evidence.name if row.evidence else "-",
            row.verdict,
        ]
        lines.append("| " + " | ".join(printable(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


@click.command("fleet-summary")
@click.argument("summary", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--evidence",
    "evidence",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="The directory on the server that holds the hosts' evidence directories.",
)
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable result.")
def fleet_summary_command(summary: Path, evidence: Path, json_mode: bool) -> None:
    """Verify every host of a fleet run on the evidence server and print the table.

    Exit 0 when every host was collected in full and verifies, 1 otherwise."""
    if not evidence.is_dir():
        raise UsageError(f"--evidence {evidence}: not a directory")
    rows = []
    for fields in _read(summary):
        row = Row(fields)
        row.evidence, row.found_by_name = _locate(fields, evidence)
        judge(row)
        rows.append(row)
    if json_mode:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        click.echo(_table(rows))
        bad = sum(not r.ok for r in rows)
        click.echo(
            f"{len(rows) - bad} of {len(rows)} hosts collected and intact"
            + (f"; {bad} not: see the verdicts above" if bad else "")
        )
    sys.exit(EXIT_OK if all(r.ok for r in rows) else EXIT_FAILED)
