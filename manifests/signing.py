"""Ed25519 keys and signatures.

Keys are always passed in explicitly; nothing here reads the environment or prompts. A
fingerprint is the SHA-256 of the raw 32-byte public key, written as 64 hex digits; the
console groups them in fours so they can be copied onto a paper custody form.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import KeyLoadError, SignatureError


def fingerprint_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def normalise_fingerprint(text: str, what: str = "a fingerprint") -> str:
    """Accept a fingerprint (or a chain head: ``what``) however it was written down
    (spaces, colons, case)."""
    fp = re.sub(r"[^0-9a-fA-F]", "", text.removeprefix("SHA256:")).lower()
    if len(fp) != 64:
        raise ValueError(f"{what} has 64 hex digits, got {len(fp)}")
    return fp


def grouped(fingerprint: str) -> str:
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))


def public_key_from_raw_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def public_key_to_raw_b64(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key_pem(data: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise KeyLoadError(f"not a PEM public key: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise KeyLoadError("public key is not Ed25519")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    try:
        public_key.verify(signature, data)
    except InvalidSignature as e:
        raise SignatureError("signature does not verify") from e


@dataclass(frozen=True)
class Signer:
    """A private key in memory. ``ephemeral`` keys never touch a disk."""

    private_key: Ed25519PrivateKey
    ephemeral: bool = False

    @classmethod
    def generate_ephemeral(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate(), ephemeral=True)

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None) -> Signer:
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except TypeError as e:
            # cryptography says TypeError when a passphrase is missing or superfluous.
            raise KeyLoadError(str(e)) from e
        except ValueError as e:
            raise KeyLoadError(
                "could not decrypt the private key (wrong passphrase or not a PEM key)"
            ) from e
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyLoadError("the private key is not Ed25519")
        return cls(key)

    @classmethod
    def from_file(cls, path: Path, passphrase: bytes | None) -> Signer:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise KeyLoadError(f"cannot read key {path}: {e.strerror}") from e
        return cls.from_pem(data, passphrase)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def private_pem(self, passphrase: bytes | None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def key_is_encrypted(data: bytes) -> bool:
    return b"ENCRYPTED PRIVATE KEY" in data
