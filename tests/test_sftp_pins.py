"""A pin file's keys as fingerprints (agent/sinks/target.py), computed without asyncssh:
each the ``SHA256:...`` that ``ssh-keygen -lf`` prints for it, and words that are not a
key of the type they claim give none."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.sinks.target import key_fingerprint, pinned_fingerprints
from manifests.errors import UsageError


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_each_key_type_gives_what_ssh_keygen_prints(tmp_path: Path, kind: str) -> None:
    key = tmp_path / kind
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", key], check=True)
    listed = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True)
    expected = listed.stdout.split()[1]
    key_type, blob = Path(f"{key}.pub").read_text().split()[:2]
    assert key_fingerprint(key_type, blob) == expected
    known = tmp_path / "known_hosts"
    known.write_text(f"[10.0.0.1]:2222 {key_type} {blob}\n# a comment\n")
    assert pinned_fingerprints(str(known)) == {expected}


def test_words_that_are_not_a_key_of_their_type_give_none(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    _, blob = Path(f"{key}.pub").read_text().split()[:2]
    assert key_fingerprint("ssh-rsa", blob) is None  # an ed25519 key called RSA
    assert key_fingerprint("ssh-ed25519", "not*base64") is None
    assert key_fingerprint("ssh-ed25519", "AAAA") is None  # shorter than its own type
    junk = tmp_path / "junk"
    junk.write_text("ssh-ed25519 AAAAC3Nz\n")
    with pytest.raises(UsageError, match="no host key or fingerprint"):
        pinned_fingerprints(str(junk))


def test_comments_revoked_keys_and_cas_are_not_pinned(tmp_path: Path) -> None:
    """Only the lines ssh would trust as the server's key: not a ``#`` comment, not a
    ``@revoked`` key, not a ``@cert-authority`` (a CA signs keys, it is not one)."""
    lines, keys = [], {}
    for kind in ("ed25519", "ecdsa", "rsa"):
        key = tmp_path / kind
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", key], check=True)
        keys[kind] = Path(f"{key}.pub").read_text().split()[:2]
    lines = [
        f"|1|c2FsdA==|aGFzaA== {' '.join(keys['ed25519'])}",
        f"@revoked * {' '.join(keys['ecdsa'])}",
        f"# {' '.join(keys['rsa'])}",
        f"@cert-authority *.example {' '.join(keys['rsa'])}",
    ]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    assert pinned_fingerprints(str(known)) == {key_fingerprint(*keys["ed25519"])}
