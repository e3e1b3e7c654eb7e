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
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
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
SEEN = "preserve-sink-host-key "  # the helper's line on ssh's stderr: the key it vouched for
# The KnownHostsCommand's code (argv: %I %f %t %K PIN...): a known_hosts line for the
# offered key only when ssh asks about the host (not ORDER) and its fingerprint is pinned.
# OpenSSH's default host key order without certificates (a pin is a key, not a CA): set,
# so ssh does not run the helper a first time (%I ORDER) to learn which types it knows.
# A fingerprint does not say its type: a server whose first key in this order is not the
# pinned one is refused (as the probe refused one whose first in asyncssh's order was not).
HOST_KEY_ORDER = (
    "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,"
    "rsa-sha2-512,rsa-sha2-256"
)
# No quote, backslash or percent sign: ssh splits the command line and expands % tokens.
HELPER_CODE = (
    "import sys;a=sys.argv;"
    'a[1]=="HOSTNAME"and a[2]in a[5:]and('
    f'sys.stderr.write("{SEEN}"+a[2]+chr(10)),print("{ALIAS}",a[3],a[4]))'
)
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


def helper_argv() -> list[str] | None:
    """The KnownHostsCommand's program: the interpreter running preserve, isolated (``-I``:
    no environment, no user site; ``-S``: no site), never a host program. None in the
    frozen kit (its executable is the whole preserve) or for a path ssh could not take
    as one word."""
    exe = sys.executable
    if frozen_kit_dir() is not None or not os.path.isabs(exe):
        return None
    if any(c in exe for c in "'\"%\\\n"):
        return None
    return [exe, "-I", "-S", "-c", HELPER_CODE]


def known_hosts_command(helper: list[str], pins: set[str]) -> str:
    """``KnownHostsCommand``'s value: every word single-quoted, then the % tokens."""
    words = " ".join(f"'{w}'" for w in helper)
    return f"{words} %I %f %t %K {' '.join(sorted(pins))}"


def seen_host_key(stderr: bytes | bytearray, pins: set[str]) -> str | None:
    """The pinned fingerprint the helper vouched for, from ssh's stderr."""
    for line in bytes(stderr).decode("utf-8", "replace").splitlines():
        if line.startswith(SEEN) and line[len(SEEN) :].strip() in pins:
            return line[len(SEEN) :].strip()
    return None


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
        self.pins: set[str] | None = None  # when ssh's KnownHostsCommand checks the pin
        self.host_key: str | None = None  # the pinned fingerprint the helper vouched for

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
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        text = [line for line in lines if not line.startswith(SEEN)]
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
    pinned: Any | tuple[list[str], set[str]],
    peer: str,
    timeout: float,
    connect_timeout: float,
) -> SshConnection:
    """Start ``ssh -s sftp`` with the key in a memfd. ``pinned`` is either the helper's
    argv and the pins (ssh asks the helper about the key it is offered) or the probed
    host key (a known_hosts memfd holding it)."""
    key_fd = _memfd("preserve-sink-key", key.export_private_key("openssh"))
    here = f"/proc/{os.getpid()}/fd"
    fds = [key_fd]
    if isinstance(pinned, tuple):
        helper, pins = pinned
        checks = {
            "UserKnownHostsFile": "none",
            "KnownHostsCommand": known_hosts_command(helper, pins),
            "HostKeyAlgorithms": HOST_KEY_ORDER,
        }
    else:
        known = f"{ALIAS} {pinned.export_public_key('openssh').decode().strip()}\n"
        try:
            fds.append(_memfd("preserve-known-hosts", known.encode()))
        except BaseException:
            os.close(key_fd)
            raise
        checks = {
            "UserKnownHostsFile": f"{here}/{fds[1]}",
            "HostKeyAlgorithms": _host_key_algorithms(pinned),
        }
    options = {
        **OPTIONS,
        **checks,
        "IdentityFile": f"{here}/{key_fd}",
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
        for fd in fds:
            os.close(fd)
        raise
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[union-attr]
    conn = SshConnection(proc, peer, target.port)
    conn.memfds = fds
    conn.timeout = timeout
    conn.pins = pinned[1] if isinstance(pinned, tuple) else None
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
    except (asyncio.IncompleteReadError, ConnectionError, asyncssh.SFTPError) as e:
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
