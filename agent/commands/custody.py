"""``preserve custody EVIDENCE_DIR --to NAME --key KEY``: hand the evidence over, signed."""

from __future__ import annotations

from pathlib import Path

import click

from manifests.errors import UsageError, VerificationError
from manifests.signing import grouped
from manifests.transfer import Handover, append_under_custody
from manifests.verify import verify_evidence

from ..console import printable
from ..keys import load_signer
from .verify import _chain_pin, _pin, report


@click.command("custody")
@click.argument("evidence_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "to", required=True, metavar="NAME", help="The new holder (person or lab).")
@click.option(
    "--key",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The NEW holder's private key; it signs the transfer.",
)
@click.option("--note", help="e.g. 'received sealed bag 7'.")
@click.option(
    "--pubkey",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Collector's public key (PEM) from the custody form: refuse any other signer.",
)
@click.option(
    "--fingerprint", metavar="HEX", help="Collector's fingerprint from the custody form (64 hex)."
)
@click.option(
    "--chain-head",
    metavar="HEX",
    help="The chain head from the custody form: refuse unless it is the head at the "
    "journal's last seal.",
)
@click.option(
    "--from-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CURRENT holder's private key, if at hand: it countersigns the handover, so "
    "the record shows the giver agreed, not only the receiver.",
)
def custody(
    evidence_dir: Path,
    to: str,
    key: Path,
    note: str | None,
    pubkey: Path | None,
    fingerprint: str | None,
    chain_head: str | None,
    from_key: Path | None,
) -> None:
    """Append a signed custody transfer, after checking the evidence is intact."""
    pin = _pin(pubkey, fingerprint)
    head = _chain_pin(chain_head)
    result = verify_evidence(evidence_dir, pin_fingerprint=pin, chain_head=head)
    if not result.ok:
        report(result, quiet=True)
        raise VerificationError(
            "the evidence does not verify, so no transfer was recorded",
            hint="document the problem above on the custody form",
        )
    signer = load_signer(key)
    previous = result.holders[-1]
    giver = None
    if from_key is not None:
        giver = load_signer(from_key)
        if giver.fingerprint != previous.fingerprint:
            raise UsageError(
                f"--from-key is not the current holder's key ({grouped(previous.fingerprint)})"
            )
    appended = append_under_custody(
        evidence_dir, result, signer, "transfer", Handover(to, note, giver)
    )
    cosigned = " (countersigned by the giver)" if giver is not None else ""
    click.echo(printable(f"custody transferred from {previous.name} to {to}{cosigned}"))
    if result.signer_fingerprint and pin is None:
        click.echo(
            f"collector's key:          {grouped(result.signer_fingerprint)} (NOT PINNED: "
            "compare it with the custody form, or pass --fingerprint next time)"
        )
    click.echo(f"new holder's fingerprint: {grouped(signer.fingerprint)}")
    click.echo(f"chain head:               {appended.chain_head}")
