"""The asyncssh transport (``--sink-transport asyncssh``): the connection made in-process,
the pins checked by asyncssh, and the client key read by it when ssh cannot take the
file as it is (a passphrase, or not OpenSSH's format). Imported only then: asyncssh is
some 50 ms of start-up that the default OpenSSH transport does without."""

from __future__ import annotations

import contextlib
import socket
import struct
from pathlib import Path
from typing import Any

from ..keys import passphrase_for
from ._ssh import load
from .target import SftpTarget, SinkRefusedError

asyncssh = load()
PASSPHRASE_ENV = "PRESERVE_SINK_KEY_PASSPHRASE"

# AES-GCM first: in asyncssh it is one AESGCM call a packet (1.1-1.4 GB/s here) where
# chacha20-poly1305 is two (about 300 MB/s), which made the stream CPU-bound.
CIPHERS = [
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes128-ctr",
]


class _Pinned(asyncssh.SSHClient):  # type: ignore[misc,name-defined]
    """Accepts the server only if its host key is one of the pinned fingerprints."""

    def __init__(self, pins: set[str]) -> None:
        self.pins = pins
        self.seen: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.seen = key.get_fingerprint("sha256")
        return self.seen.rstrip("=") in self.pins


async def open_asyncssh(
    target: SftpTarget, pins: set[str], key: Any, timeout: float, connect_timeout: float
) -> tuple[Any, Any, str | None]:
    client = _Pinned(pins)
    conn, _ = await asyncssh.create_connection(
        lambda: client,
        target.host,
        target.port,
        username=target.user,
        client_keys=[asyncssh.import_private_key(key) if isinstance(key, bytes) else key],
        known_hosts=([], [], []),  # nothing trusted but the pins (checked by _Pinned)
        config=None,  # no ~/.ssh/config, no agent, no PKCS#11, no GSS: only what was given
        agent_path=None,
        pkcs11_provider=None,
        gss_host=None,
        preferred_auth="publickey",
        encryption_algs=CIPHERS,
        # A silent link counts as lost after about ``timeout`` seconds: until then TCP
        # resends and the writes wait, holding at most IN_FLIGHT chunks per file.
        keepalive_interval=max(timeout / 4, 0.5),
        keepalive_count_max=4,
        connect_timeout=connect_timeout,
    )
    # Closing resets the connection and drops what the kernel still queues for it: every
    # request the run needs was answered by then, and after a loss nothing sent before
    # it may reach the server once the link is back (see reseal).
    with contextlib.suppress(OSError, AttributeError):
        sock = conn.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return conn, await conn.start_sftp_client(), client.seen


def read_key(path: Path) -> Any:
    """The key, decrypted with the passphrase from the environment or a prompt."""
    try:
        return asyncssh.read_private_key(str(path))
    except asyncssh.KeyImportError as e:
        if "assphrase" not in str(e):
            raise SinkRefusedError(f"--sink-key {path}: {e}") from e
    except OSError as e:
        raise SinkRefusedError(f"--sink-key {path}: {e.strerror}") from e
    passphrase = passphrase_for(str(path), env=PASSPHRASE_ENV)
    if passphrase is None:
        raise SinkRefusedError(
            f"--sink-key {path} is passphrase-protected: set {PASSPHRASE_ENV} or run on a "
            "terminal so the passphrase can be asked for"
        )
    try:
        return asyncssh.read_private_key(str(path), passphrase)
    except asyncssh.KeyImportError as e:
        raise SinkRefusedError(f"--sink-key {path}: {e}") from e
