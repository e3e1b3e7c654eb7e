"""``preserve export EVIDENCE_DIR --format case|bodyfile|hashdeep|sha256sum``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from manifests import layout
from manifests.errors import VerificationError
from manifests.verify import verify_evidence

from ..export import bodyfile, case, hashdeep
from ..export.stream import Sink, sealed_artifacts
from ..report.evidence import open_stored
from ._output import check_output, output_option, output_stream

EXIT_OK, EXIT_FAILED = 0, 1


@click.command("export")
@click.argument("evidence_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["case", "bodyfile", "hashdeep", "sha256sum"]),
    help="case: CASE/UCO JSON-LD; bodyfile: for mactime/plaso; hashdeep: for hashdeep -a; "
    "sha256sum: the SHA256SUMS list.",
)
@output_option()
def export_command(evidence_dir: Path, fmt: str, output: Path | None) -> None:
    """Write the evidence's metadata in a format other forensic tools read.

    The evidence is verified first; the export is written either way (a damaged exhibit
    still needs describing), but the exit code is 1 and a warning names the problem
    when verification fails. Only artifacts sealed by a valid signature are exported, as
    the journal is read: memory does not grow with the number of files."""
    check_output(evidence_dir, output)
    verification = verify_evidence(evidence_dir)  # NotEvidenceError: exit 2
    warnings: list[str] = []
    with output_stream(output) as stream:
        out = Sink(stream)
        if fmt == "case":
            warnings = case.write(
                out,
                verification.iter_records(),
                evidence_dir.name,
                verification.ok,
                verification.sealed_through,
            )
        elif fmt == "bodyfile":
            bodyfile.write(out, sealed_artifacts(verification))
        elif fmt == "hashdeep":
            hashdeep.write(out, sealed_artifacts(verification), evidence_dir.name)
        else:
            _copy_sums(evidence_dir, out)
        out.flush()
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if not verification.ok:
        click.echo(
            f"warning: {evidence_dir} FAILED verification; the export describes what the "
            "journal records, not what is on disk now. Run verify for the details.",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED)


def _copy_sums(evidence_dir: Path, out: Sink) -> None:
    """``SHA256SUMS`` as it is, read in chunks (it has a line for every file)."""
    try:
        with os.fdopen(open_stored(evidence_dir, layout.SUMS), "rb") as sums:
            out.copy(sums)
    except OSError as e:
        raise VerificationError(
            f"cannot read {layout.SUMS}: {e.strerror}",
            hint=f"run 'verify {evidence_dir}' for the details",
        ) from e
