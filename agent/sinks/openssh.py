"""The default SFTP transport: OpenSSH's own ``ssh -s sftp``, with ``wire`` speaking
SFTP over its pipes.

asyncssh's pure-Python packet layer cost most of a core on a fast link; OpenSSH's C
client does the ciphers instead. It is run without any of the host's configuration:
``-F /dev/null``, no agent, no forwarding, no multiplexing, no proxy, batch mode, and a
known_hosts built from the pin with ``StrictHostKeyChecking=yes``. A fingerprint is not
a known_hosts line, so the server's key is fetched first by an asyncssh key exchange
(``probe``) and compared with the pins: a mismatch is refused with the same one-line
message as the asyncssh transport, before ssh runs. The decrypted client key and the
known_hosts reach ssh as memfds, never as files on the host: ssh closes every inherited
descriptor above stderr at start, so it opens them as ``/proc/<preserve>/fd/N``, which
preserve holds open until the session is up.

In the kit the bundled ``_internal/openssh/ssh`` runs through the kit's own loader;
the host's ``/usr/bin/ssh`` may be the attacker's. A pip-installed ``preserve`` uses the
``ssh`` on ``PATH`` and records its path and hash in the journal."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

from collectors.selfexec import frozen_kit_dir
from manifests.digest import sha256_bytes

from ..kitloader import GLIBC_DIR, KIT_SSH, loader_path
from ._ssh import asyncssh
from .pipe import PipeWriter
from .target import SftpTarget, SinkRefusedError
from .wire import WireClient

ALIAS = "preserve-sink"  # the known_hosts name: the pin, whatever address was dialled
STDERR_KEEP = 4096
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
_SYS_PIDFD_GETFD = 438
OPTIONS = {
    "BatchMode": "yes",
    "StrictHostKeyChecking": "yes",
    "UpdateHostKeys": "no",
    "GlobalKnownHostsFile": "/dev/null",
    "HostKeyAlias": ALIAS,
    "CheckHostIP": "no",
    "VerifyHostKeyDNS": "no",
    "HashKnownHosts": "no",
    "IdentitiesOnly": "yes",
    "IdentityAgent": "none",
    "AddKeysToAgent": "no",
    "PKCS11Provider": "none",
    "PreferredAuthentications": "publickey",
    "PasswordAuthentication": "no",
    "KbdInteractiveAuthentication": "no",
    "GSSAPIAuthentication": "no",
    "HostbasedAuthentication": "no",
    "ForwardAgent": "no",
    "ForwardX11": "no",
    "ClearAllForwardings": "yes",
    "Tunnel": "no",
    "PermitLocalCommand": "no",
    "ControlMaster": "no",
    "ControlPath": "none",
    "ProxyCommand": "none",
    "ProxyJump": "none",
    "CanonicalizeHostname": "no",
    "EscapeChar": "none",
    "RequestTTY": "no",
    "Compression": "no",
    "ConnectionAttempts": "1",
    "LogLevel": "ERROR",
    # AES-GCM ahead of OpenSSH's default chacha20-poly1305: faster where AES-NI is.
    "Ciphers": "^aes128-gcm@openssh.com,aes256-gcm@openssh.com",
}


def ssh_environment() -> dict[str, str]:
    """ssh's whole environment: no agent, no askpass, no display. In the kit, the
    kit's OpenSSL configuration (kit_rthook), never the host's openssl.cnf."""
    env = {"PATH": "/nonexistent", "LC_ALL": "C"}
    if frozen_kit_dir() is not None:
        for name in ("OPENSSL_CONF", "OPENSSL_MODULES", "OPENSSL_ENGINES"):
            if name in os.environ:
                env[name] = os.environ[name]
    return env


def ssh_program() -> tuple[list[str], dict[str, Any]]:
    """The argv that starts ssh, and what the journal records of it."""
    kit = frozen_kit_dir()
    if kit is not None:
        ssh = Path(kit) / KIT_SSH
        if not ssh.is_file():
            raise SinkRefusedError(f"the kit has no {KIT_SSH}: use --sink-transport asyncssh")
        libs = f"{Path(kit) / GLIBC_DIR}:{Path(kit) / '_internal'}"
        prefix = [str(loader_path(Path(kit))), "--inhibit-cache", "--library-path", libs]
        return [*prefix, str(ssh)], {"ssh": KIT_SSH, "ssh_sha256": sha256_bytes(ssh.read_bytes())}
    found = shutil.which("ssh")
    if found is None:
        raise SinkRefusedError(
            "no ssh on PATH for the OpenSSH transport", hint="or use --sink-transport asyncssh"
        )
    path = os.path.realpath(found)
    return [path], {"ssh": path, "ssh_sha256": sha256_bytes(Path(path).read_bytes())}


def _memfd(name: str, data: bytes) -> int:
    """Anonymous memory holding ``data``, inheritable, owner-only (ssh refuses a key
    others could read)."""
    fd = os.memfd_create(name, 0)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Seen(asyncssh.SSHClient):  # type: ignore[misc]
    def __init__(self) -> None:
        self.key: Any = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.key = key
        return False  # the key is all the probe wants: no login


async def probe(target: SftpTarget, pins: set[str], timeout: float) -> tuple[Any, str]:
    """The server's host key (checked against the pins) and its address."""
    seen = _Seen()
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


def _host_key_algorithms(key: Any) -> str:
    name = key.algorithm.decode()
    return "rsa-sha2-512,rsa-sha2-256" if name == "ssh-rsa" else name


class SshConnection:
    """The ssh process: what ``SftpSink`` calls its connection (abort, close, closed)."""

    def __init__(self, proc: subprocess.Popen[bytes], peer: str, port: int) -> None:
        self.proc, self._peer = proc, (peer, port)
        self.memfds: list[int] = []  # the key and known_hosts, closed once ssh read them
        self.stderr = bytearray()
        self.client: WireClient | None = None
        self.timeout = 60.0  # how long a full pipe may wait for ssh (--sink-timeout)

    def get_extra_info(self, name: str) -> Any:
        return self._peer if name == "peername" else None

    def is_closed(self) -> bool:
        return self.proc.poll() is not None or (
            self.client is not None and self.client.lost is not None
        )

    def forget_secrets(self) -> None:
        for fd in self.memfds:
            os.close(fd)
        self.memfds = []

    def abort(self) -> None:
        self.forget_secrets()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self.client is not None:
            self.client.exit()

    async def wait_closed(self) -> None:
        while self.proc.poll() is None:
            await asyncio.sleep(0.02)

    def why(self) -> str:
        text = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return text[-1][:300] if text else f"ssh exited with {self.proc.poll()}"

    def no_lingering(self) -> bool:
        """Set ``SO_LINGER`` 0 on ssh's TCP socket (taken with ``pidfd_getfd``), as the
        asyncssh transport does on its own: when ssh dies after a loss, what the kernel
        still queues is dropped, never delivered behind a continuation."""
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except OSError:
            return False
        try:
            for name in os.listdir(f"/proc/{self.proc.pid}/fd"):
                with contextlib.suppress(OSError):
                    if not os.readlink(f"/proc/{self.proc.pid}/fd/{name}").startswith("socket:"):
                        continue
                fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(name), 0)
                if fd < 0:
                    continue
                with socket.socket(fileno=fd) as sock:
                    if sock.type != socket.SOCK_STREAM or sock.family == socket.AF_UNIX:
                        sock.detach()
                        os.close(fd)
                        continue
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return True
        finally:
            os.close(pidfd)
        return False


def spawn(
    program: list[str],
    target: SftpTarget,
    key: Any,
    host_key: Any,
    peer: str,
    timeout: float,
    connect_timeout: float,
) -> SshConnection:
    """Start ``ssh -s sftp`` with the key and the pinned known_hosts in memfds."""
    known = f"{ALIAS} {host_key.export_public_key('openssh').decode().strip()}\n"
    key_fd = _memfd("preserve-sink-key", key.export_private_key("openssh"))
    known_fd = _memfd("preserve-known-hosts", known.encode())
    here = f"/proc/{os.getpid()}/fd"
    options = {
        **OPTIONS,
        "UserKnownHostsFile": f"{here}/{known_fd}",
        "IdentityFile": f"{here}/{key_fd}",
        "HostKeyAlgorithms": _host_key_algorithms(host_key),
        "ServerAliveInterval": str(max(int(timeout / 4), 1)),
        "ServerAliveCountMax": "4",
        "ConnectTimeout": str(max(int(connect_timeout), 1)),
    }
    argv = [*program, "-F", "/dev/null", "-T", "-x", "-a", "-k", "-s"]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += ["-p", str(target.port), "-l", target.user, "--", target.host, "sftp"]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C is preserve's to handle, not ssh's
            env=ssh_environment(),
        )
    except BaseException:
        os.close(key_fd)
        os.close(known_fd)
        raise
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[union-attr]
    conn = SshConnection(proc, peer, target.port)
    conn.memfds = [key_fd, known_fd]
    conn.timeout = timeout
    return conn


async def start(conn: SshConnection) -> WireClient:
    """The SFTP session over ssh's pipes; the ssh's own last error line if it fails."""
    loop = asyncio.get_running_loop()
    proc = conn.proc
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
    writer = PipeWriter(os.dup(proc.stdin.fileno()), conn.timeout)
    proc.stdin.close()
    errors = asyncio.StreamReader(limit=STDERR_KEEP, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(errors), proc.stderr)

    async def keep_stderr() -> None:
        while chunk := await errors.read(STDERR_KEEP):
            conn.stderr += chunk
            del conn.stderr[:-STDERR_KEEP]

    conn.stderr_task = loop.create_task(keep_stderr())  # type: ignore[attr-defined]
    client = WireClient(reader, writer)
    conn.client = client
    try:
        await client.start()
    except (asyncio.IncompleteReadError, ConnectionError, asyncssh.SFTPError) as e:
        await asyncio.sleep(0.1)  # ssh's last words
        raise ConnectionError(conn.why()) from e
    finally:
        conn.forget_secrets()  # logged in (or failed): ssh has read both
    conn.no_lingering()
    return client
