"""Loading a signing key the way a responder expects: passphrase from
``PRESERVE_KEY_PASSPHRASE`` or a prompt, never from the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from manifests.errors import KeyLoadError
from manifests.signing import Signer, key_is_encrypted

PASSPHRASE_ENV = "PRESERVE_KEY_PASSPHRASE"


def passphrase_for(purpose: str, confirm: bool = False, env: str = PASSPHRASE_ENV) -> bytes | None:
    value = os.environ.get(env)
    if value:
        return value.encode()
    if not sys.stdin.isatty():
        return None
    text = click.prompt(
        f"Passphrase for {purpose}", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return text.encode()


def load_signer(path: Path) -> Signer:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyLoadError(f"cannot read key {path}: {e.strerror}") from e
    passphrase = None
    if key_is_encrypted(data):
        passphrase = passphrase_for(str(path))
        if passphrase is None:
            raise KeyLoadError(
                f"{path} is passphrase-protected: set {PASSPHRASE_ENV} or run on a terminal "
                "so the passphrase can be asked for"
            )
    return Signer.from_pem(data, passphrase)
