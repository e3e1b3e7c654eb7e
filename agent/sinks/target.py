"""``sftp://USER@HOST[:PORT]/PATH`` and the pinned host key: parsed before anything
connects, so a mistyped URL or pin is a usage error (exit 2) with nothing collected."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from manifests.errors import UsageError

SCHEME = "sftp://"
TIMEOUT = 60.0  # default --sink-timeout: seconds the link may be silent before it is lost
CONNECT_TIMEOUT = 20.0  # how long connecting (and logging in) may take
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}=?")


class SinkRefusedError(UsageError):
    """The server could not be used as it was given (wrong host key, no fsync, login
    refused): exit 2, before anything is collected."""


@dataclass(frozen=True)
class SftpTarget:
    user: str
    host: str
    port: int
    path: str

    def url(self, path: str | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{SCHEME}{self.user}@{host}:{self.port}{path or self.path}"

    def __str__(self) -> str:
        return self.url()


def is_remote(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_target(text: str) -> SftpTarget:
    parts = urlsplit(text)
    try:
        port = parts.port or 22
    except ValueError as e:
        raise UsageError(f"-o {text}: the port is not a number") from e
    if parts.scheme != "sftp" or not parts.username or not parts.hostname:
        raise UsageError(
            f"-o {text}: expected sftp://USER@HOST[:PORT]/PATH",
            hint="e.g. -o sftp://evidence@10.0.0.5:22/srv/evidence",
        )
    if parts.password is not None:
        raise UsageError(
            "-o: a password in the URL is not accepted", hint="use --sink-key KEY (a key pair)"
        )
    return SftpTarget(unquote(parts.username), parts.hostname, port, unquote(parts.path) or "/")


def pinned_fingerprints(text: str) -> set[str]:
    """``SHA256:...`` as ``ssh-keygen -lf`` prints it, or a file: known_hosts lines,
    ``.pub`` lines or ``ssh-keygen -lf`` output. Every key in the file is accepted."""
    if _FINGERPRINT.fullmatch(text.strip()):
        return {text.strip().rstrip("=")}
    path = Path(text)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise UsageError(
            f"--sink-host-key {text}: neither a SHA256:... fingerprint nor a readable file "
            f"({e.strerror})",
            hint="give the server's key as 'ssh-keygen -lf' prints it on the server",
        ) from e
    found: set[str] = set()
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#") or words[0] in ("@revoked", "@cert-authority"):
            continue  # a comment, a key revoked, a CA: none of them is the server's key
        found.update(m.group(0).rstrip("=") for m in _FINGERPRINT.finditer(line))
        for i, word in enumerate(words[:-1]):
            if word.startswith(("ssh-", "ecdsa-", "sk-")):
                fingerprint = key_fingerprint(word, words[i + 1])
                if fingerprint is not None:
                    found.add(fingerprint)
    if not found:
        raise UsageError(f"--sink-host-key {text}: no host key or fingerprint in the file")
    return found


def key_fingerprint(key_type: str, blob: str) -> str | None:
    """``SHA256:...`` of a public key line's key, as ssh-keygen -lf prints it, or None
    if the words are not a key of that type (the key's own first field names it)."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    size = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 + size or raw[4 : 4 + size] != key_type.encode():
        return None
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def key_algorithms(key_type: str) -> str:
    """A key type as HostKeyAlgorithms names it: an RSA key is asked for by its SHA-2
    signatures (OpenSSH no longer offers ssh-rsa's SHA-1)."""
    return "rsa-sha2-512,rsa-sha2-256" if key_type == "ssh-rsa" else key_type


# ssh-keygen -lf's "(TYPE)" and a key line's type, as HostKeyAlgorithms names.
_LISTED = {"ED25519": "ssh-ed25519", "RSA": key_algorithms("ssh-rsa")}
_ECDSA_BITS = {"256": "ecdsa-sha2-nistp256", "384": "ecdsa-sha2-nistp384",
               "521": "ecdsa-sha2-nistp521"}  # fmt: skip
_KEY_TYPES = {"ssh-ed25519", *_ECDSA_BITS.values()}


def pinned_key_order(text: str) -> str | None:
    """HostKeyAlgorithms for a pin file that says every key's type (known_hosts or
    ``.pub`` lines, ``ssh-keygen -lf`` output): those types, in the file's order, so the
    server is asked for a pinned key even when it prefers another. None for a bare
    fingerprint, or a file with a key whose type it does not say."""
    if _FINGERPRINT.fullmatch(text.strip()):
        return None
    try:
        lines = Path(text).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    order: list[str] = []
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        found = [w for w in words[:-1] if w in _KEY_TYPES or w == "ssh-rsa"]
        if found:
            name = key_algorithms(found[0])
        elif _FINGERPRINT.search(line) and words[-1].startswith("(") and words[-1].endswith(")"):
            kind = words[-1][1:-1]
            name = _ECDSA_BITS.get(words[0], "") if kind == "ECDSA" else _LISTED.get(kind, "")
        else:
            name = ""
        if not name:
            if _FINGERPRINT.search(line) or any(
                w.startswith(("ssh-", "ecdsa-", "sk-")) for w in words
            ):
                return None  # a pinned key of a type not said, or not offered here
            continue
        if name not in order:
            order.append(name)
    return ",".join(order) or None
