"""``preserve keygen -o DIR``: an Ed25519 key pair for a kit or an examiner."""

from __future__ import annotations

import os
from pathlib import Path

import click

from manifests.errors import UsageError
from manifests.signing import Signer, grouped, public_key_pem

from ..keys import passphrase_for


@click.command("keygen")
@click.option(
    "-o",
    "--output",
    "--out",
    "out_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for NAME.key (private, 0600) and NAME.pub.",
)
@click.option("--name", metavar="NAME", default="signer", show_default=True, help="File name stem.")
@click.option(
    "--no-passphrase",
    is_flag=True,
    help="Store the private key unencrypted (only for test or lab automation).",
)
def keygen(out_dir: Path, name: str, no_passphrase: bool) -> None:
    """Make an Ed25519 signing key pair; the private key is passphrase-encrypted PKCS#8."""
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(
                f"{path} already exists",
                hint="keys are never overwritten: choose another -o or --name",
            )
    passphrase = None
    if not no_passphrase:
        passphrase = passphrase_for(f"the new key {private_path}", confirm=True)
        if not passphrase:
            raise UsageError(
                "a passphrase is needed",
                hint="set PRESERVE_KEY_PASSPHRASE, run on a terminal, or pass --no-passphrase",
            )
    signer = Signer.generate_ephemeral()
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_pem(passphrase))
    public_path.write_bytes(public_key_pem(signer.public_key))
    click.echo(
        f"private key: {private_path} ({'passphrase-protected' if passphrase else 'NOT encrypted'})"
    )
    click.echo(f"public key:  {public_path}")
    click.echo(f"fingerprint: {grouped(signer.fingerprint)}")
    click.echo(f"             ({signer.fingerprint})")
