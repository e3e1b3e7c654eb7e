"""Secrets among configuration files: recorded by ``stat`` and SHA-256, never copied.

Password hashes (``shadow``, ``gshadow``, ``security/opasswd``), private keys (SSH host
keys, TLS keys, Kerberos keytabs) and stored credentials (PPP and IPsec secrets, Wi-Fi
and VPN connection files) would turn the evidence drive into a credential store. The
hash still proves which file was there (and lets a lab with the host's disk check it);
the ``skipped`` record carries the file's stat and SHA-256 and says why. A file is a
secret by name (``NAMES``), or, for certificate-like names, when it holds a PEM private
key (``PRIVATE KEY-----`` in its first megabyte)."""

from __future__ import annotations

import os
import stat
from fnmatch import fnmatchcase

from manifests.digest import sha256_fd

from .outcomes import Recorder
from .source import open_source
from .stat_record import stat_fields

# Host paths (after the collection root), fnmatch patterns; '*' also matches '/'.
NAMES = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/shadow.*",
    "/etc/gshadow.*", "/etc/security/opasswd", "/etc/security/opasswd.*",
    "/etc/ssh/ssh_host_*_key", "*/ssh_host_*_key", "*.key", "*.keytab", "/etc/krb5.keytab",
    "/etc/ppp/*-secrets", "/etc/ipsec.secrets", "/etc/ipsec.d/private/*", "/etc/ssl/private/*",
    "/etc/NetworkManager/system-connections/*", "/etc/wpa_supplicant/*.conf",
    "/etc/openvpn/*.key", "/etc/letsencrypt/archive/*/privkey*", "/etc/letsencrypt/keys/*",
    "/etc/sssd/sssd.conf", "*/id_rsa", "*/id_dsa",
    "*/id_ecdsa", "*/id_ed25519", "*/id_ecdsa_sk", "*/id_ed25519_sk",
)  # fmt: skip
SNIFFED = ("*.pem", "*.crt", "*.cer", "*.der", "*.p8", "*.priv", "*/private/*", "*.ovpn")
SNIFF_BYTES = 1024 * 1024
MARKER = b"PRIVATE KEY-----"


def secret_reason(path: str, host_path: bytes) -> str | None:
    """Why ``path`` (its name on the host, ``/etc/...``) is a secret, or None. Reads the
    head of a certificate-like file (``host_path``) to look for a private key."""
    if any(fnmatchcase(path, p) for p in NAMES):
        return "password hashes, a private key or credentials, by its name"
    if any(fnmatchcase(path, p) for p in SNIFFED):
        try:
            fd = open_source(host_path)
        except OSError:
            return None
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode) and MARKER in os.read(fd, SNIFF_BYTES):
                return "holds a private key"
        except OSError:
            return None
        finally:
            os.close(fd)
    return None


def record_secret(
    engine: Recorder, collector: str, host_path: bytes, reason: str, **fields: object
) -> None:
    """One ``skipped`` record with the secret's stat and SHA-256; its bytes are not kept."""
    try:
        fd = open_source(host_path)
    except OSError as e:
        engine.record_skip(
            collector, host_path, f"secret ({reason}): not copied; cannot open to hash it: "
            f"{e.strerror}", secret=True, **fields,
        )  # fmt: skip
        return
    try:
        st = os.fstat(fd)
        digest = sha256_fd(fd)[0] if stat.S_ISREG(st.st_mode) else None
    except OSError as e:
        engine.record_skip(
            collector, host_path, f"secret ({reason}): not copied; read failed: {e.strerror}",
            secret=True, **fields,
        )  # fmt: skip
        return
    finally:
        os.close(fd)
    engine.record_skip(
        collector, host_path, f"secret ({reason}): stat and SHA-256 recorded, content not copied",
        secret=True, sha256=digest, stat=stat_fields(st), **fields,
    )  # fmt: skip
