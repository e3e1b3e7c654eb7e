"""``preserve export EVIDENCE_DIR --format case|bodyfile|hashdeep|sha256sum``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from manifests import layout
from manifests.errors import VerificationError

from ..export import bodyfile, case, hashdeep
from ..report.evidence import load
from ._output import check_output, write_output

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
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout (not inside the evidence directory).",
)
def export_command(evidence_dir: Path, fmt: str, output: Path | None) -> None:
    """Write the evidence's metadata in a format other forensic tools read.

    The evidence is verified first; the export is written either way (a damaged exhibit
    still needs describing), but the exit code is 1 and a warning names the problem
    when verification fails."""
    check_output(evidence_dir, output)
    ev = load(evidence_dir)  # NotEvidenceError: exit 2
    # Only artifacts sealed by a valid signature are exported.
    sealed = ev.verification.sealed_through
    arts = [
        a
        for a in ev.artifacts.values()
        if sealed is not None and isinstance(a.get("seq"), int) and a["seq"] <= sealed
    ]
    if fmt == "case":
        text = (
            json.dumps(
                case.build(ev.records, arts, evidence_dir.name, ev.verification.ok), indent=2
            )
            + "\n"
        )
    elif fmt == "bodyfile":
        text = bodyfile.render(arts)
    elif fmt == "hashdeep":
        text = hashdeep.render(arts, evidence_dir.name)
    else:
        try:
            text = (evidence_dir / layout.SUMS).read_text(encoding="utf-8")
        except OSError as e:
            raise VerificationError(
                f"cannot read {layout.SUMS}: {e.strerror}",
                hint=f"run 'verify {evidence_dir}' for the details",
            ) from e
    write_output(text, output)
    if not ev.verification.ok:
        click.echo(
            f"warning: {evidence_dir} FAILED verification; the export describes what the "
            "journal records, not what is on disk now. Run verify for the details.",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED)
