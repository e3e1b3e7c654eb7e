"""The default SFTP transport: OpenSSH's own ``ssh -s sftp``, with ``wire`` speaking
SFTP over its pipes.

asyncssh's pure-Python packet layer cost most of a core on a fast link; OpenSSH's C
client does the ciphers instead. It is run without any of the host's configuration:
``-F /dev/null``, no agent, no forwarding, no multiplexing, no proxy, batch mode, and a
pin checked by ssh itself with ``StrictHostKeyChecking=yes``. A fingerprint is not a
known_hosts line: ssh's ``KnownHostsCommand`` (OpenSSH >= 8.5) runs ``helper_argv``, this
same interpreter with ``-I -S`` and a few lines of code, given the key ssh was offered
(``%f``, ``%t``, ``%K``) and the pins; it prints the known_hosts line only when the
fingerprint is pinned, and names it on ssh's stderr, where preserve reads the
fingerprint the journal records. A wrong key: ssh's "Host key verification failed",
the same one-line refusal as the asyncssh transport, before anything is collected. The
frozen kit has no bare interpreter to run, so there the server's key is fetched first by
an asyncssh key exchange (``probe``), compared with the pins, and ssh is given a
known_hosts holding it. The decrypted client key (and that known_hosts) reach ssh as
memfds, never as files on the host: ssh closes every inherited descriptor above stderr
at start, so it opens them as ``/proc/<preserve>/fd/N``, which preserve holds open until
the session is up.

In the kit the bundled ``_internal/openssh/ssh`` runs through the kit's own loader;
the host's ``/usr/bin/ssh`` may be the attacker's. A pip-installed ``preserve`` uses the
``ssh`` on ``PATH`` and records its path and hash in the journal."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from ._ssh import load
from .pipe import PipeWriter
from .sftpcodec import SftpError
from .sshproc import (
    ALIAS,
    SEEN,
    STDERR_KEEP,
    SshConnection,
    helper_argv,
    known_hosts_command,
    seen_host_key,
    spawn,
    ssh_program,
)
from .target import SftpTarget, key_algorithms
from .wire import WireClient

__all__ = [
    "SEEN",
    "SshConnection",
    "helper_argv",
    "known_hosts_command",
    "known_line",
    "probe",
    "seen_host_key",
    "spawn",
    "ssh_program",
    "start",
]


async def probe(target: SftpTarget, pins: set[str], timeout: float) -> tuple[Any, str]:
    """The server's host key (checked against the pins) and its address: the frozen
    kit's way (no interpreter for ssh's KnownHostsCommand), with asyncssh."""
    asyncssh = load()

    class Seen(asyncssh.SSHClient):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.key: Any = None

        def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
            self.key = key
            return False  # the key is all the probe wants: no login

    seen = Seen()
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: seen, target.host, target.port, username=target.user,
            known_hosts=([], [], []), config=None, agent_path=None, client_keys=None,
            pkcs11_provider=None, gss_host=None, connect_timeout=timeout,
        )  # fmt: skip
        conn.close()
    except asyncssh.HostKeyNotVerifiable:
        pass
    if seen.key is None:
        raise ConnectionError("no host key offered")
    if seen.key.get_fingerprint("sha256").rstrip("=") not in pins:
        raise asyncssh.HostKeyNotVerifiable("not the pinned key")
    infos = await asyncio.get_running_loop().getaddrinfo(
        target.host, target.port, type=socket.SOCK_STREAM
    )
    return seen.key, str(infos[0][4][0])


def known_line(key: Any) -> tuple[str, str]:
    """The known_hosts line (under the alias) and HostKeyAlgorithms for a probed key."""
    line = f"{ALIAS} {key.export_public_key('openssh').decode().strip()}\n"
    return line, key_algorithms(key.algorithm.decode())


async def start(conn: SshConnection) -> WireClient:
    """The SFTP session over ssh's pipes; the ssh's own last error line if it fails."""
    loop = asyncio.get_running_loop()
    proc = conn.proc
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
    writer = PipeWriter(os.dup(proc.stdin.fileno()), conn.timeout, on_stall=conn.abort)
    proc.stdin.close()
    try:
        return await _session(conn, loop, reader, writer)
    except BaseException:
        writer.write_eof()  # a failed start leaves no watchdog, and no descriptor
        raise


async def _session(
    conn: SshConnection,
    loop: asyncio.AbstractEventLoop,
    reader: asyncio.StreamReader,
    writer: PipeWriter,
) -> WireClient:
    """INIT, VERSION, and the pin ssh's helper vouched for, read from ssh's stderr."""
    proc = conn.proc
    assert proc.stderr is not None
    errors = asyncio.StreamReader(limit=STDERR_KEEP, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(errors), proc.stderr)

    vouched = asyncio.Event()

    async def keep_stderr() -> None:
        while chunk := await errors.read(STDERR_KEEP):
            conn.stderr += chunk
            if conn.pins is not None and conn.host_key is None:
                conn.host_key = seen_host_key(conn.stderr, conn.pins)
                if conn.host_key is not None:
                    vouched.set()
            del conn.stderr[:-STDERR_KEEP]

    conn.stderr_task = loop.create_task(keep_stderr())  # type: ignore[attr-defined]
    client = WireClient(reader, writer)
    conn.client = client
    try:
        await client.start()
    except (asyncio.IncompleteReadError, ConnectionError, SftpError) as e:
        await asyncio.sleep(0.1)  # ssh's last words
        raise ConnectionError(conn.why()) from e
    finally:
        conn.forget_secrets()  # logged in (or failed): ssh has read both
    if conn.pins is not None:
        # The helper wrote its line before ssh even logged in: it is in the pipe.
        try:
            await asyncio.wait_for(vouched.wait(), 5)
        except TimeoutError:
            conn.abort()
            raise ConnectionError("ssh logged in, but no pinned host key was reported") from None
    conn.no_lingering()
    return client
