"""``preserve report EVIDENCE_DIR``: the first draft of the facts, from verified evidence."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from manifests.errors import UsageError

from ..report import pdf, render
from ..report.evidence import to_ns
from ..report.findings import EXPECTED_PORTS
from ..report.model import build
from ..report.words import plural
from ._output import check_output, output_option, write_output
from .verify import _chain_pin

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@click.command("report")
@click.argument("evidence_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json", "pdf"]),
    default="md",
    show_default=True,
    help="pdf: the HTML report printed by headless Chromium (needs -o FILE on a terminal).",
)
@output_option()
@click.option(
    "--detected-at",
    metavar="TIME",
    help="When the incident was detected, UTC (e.g. 2026-11-27T03:00:00Z); "
    "deadlines count from it. Default: the collection start.",
)
@click.option(
    "--deadlines",
    "deadlines_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A TOML file of reporting duties to use instead of the built-in one.",
)
@click.option(
    "--expect-port",
    type=int,
    multiple=True,
    help="A listening port that is normal on this host (repeatable).",
)
@click.option(
    "--chain-head",
    metavar="HEX",
    help="The chain head from the custody form: the evidence fails verification unless "
    "it is the head at the journal's last seal.",
)
def report_command(
    evidence_dir: Path,
    fmt: str,
    output: Path | None,
    detected_at: str | None,
    deadlines_file: Path | None,
    expect_port: tuple[int, ...],
    chain_head: str | None,
) -> None:
    """Verify EVIDENCE_DIR, then write a report: verdict, custody, host facts, findings,
    timeline, 5W1H worksheet and a deadlines checklist.

    Exit code 0 when the evidence is intact, 1 when the report was written but the
    evidence failed verification (the report says so on every page), 2 on usage errors.
    """
    check_output(evidence_dir, output)
    if fmt == "pdf" and output is None and sys.stdout.isatty():
        raise UsageError("--format pdf writes a binary file", hint="give -o FILE.pdf")
    if detected_at and to_ns(detected_at) is None:
        raise UsageError(
            f"--detected-at {detected_at!r} is not a time", hint="use e.g. 2026-11-27T03:00:00Z"
        )
    data = build(  # NotEvidenceError, DeadlinesError: exit 2
        evidence_dir,
        detected_at=detected_at,
        deadlines_file=deadlines_file,
        expected_ports=EXPECTED_PORTS | frozenset(expect_port),
        chain_head=_chain_pin(chain_head),
    )
    write_output(pdf.to_pdf(render(data, "html")) if fmt == "pdf" else render(data, fmt), output)
    v = data["verification"]
    if not v["ok"]:
        click.echo(
            f"warning: {evidence_dir} FAILED verification "
            f"({plural(v['problem_count'], 'problem')}); "
            "the report says so at the top of every section. Run verify for the details.",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED)
    if output:
        click.echo(f"report written to {output} (evidence intact)", err=True)
