"""Starting OpenSSH's ``ssh -s sftp`` for the SFTP sink, with no asyncssh: the process,
its options, the pin's KnownHostsCommand helper and the key in a memfd (see ``openssh``
for the why). Cheap to import, so that ssh can be started while the rest of preserve is
still being loaded (``dial``), its connection made meanwhile on the other core."""

from __future__ import annotations

import base64
import binascii
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.selfexec import frozen_kit_dir
from manifests.digest import sha256_bytes
from manifests.errors import UsageError

from ..kitloader import GLIBC_DIR, KIT_SSH, loader_path
from .sshpeer import socket_fds
from .target import (
    CONNECT_TIMEOUT,
    TIMEOUT,
    SftpTarget,
    SinkRefusedError,
    pinned_fingerprints,
    pinned_key_order,
)

if TYPE_CHECKING:
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


class SshConnection:
    """The ssh process: what ``SftpSink`` calls its connection (abort, close, closed)."""

    def __init__(self, proc: subprocess.Popen[bytes], peer: str, port: int) -> None:
        self.proc, self.peer = proc, (peer, port)
        self.memfds: list[int] = []  # the key and known_hosts, closed once ssh read them
        self.stderr = bytearray()
        self.client: WireClient | None = None
        self.timeout = 60.0  # how long a full pipe may wait for ssh (--sink-timeout)
        self.pins: set[str] | None = None  # when ssh's KnownHostsCommand checks the pin
        self.host_key: str | None = None  # the pinned fingerprint the helper vouched for

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

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
        """Until ssh has exited, on its pidfd (20 ms sleeps were up to 20 ms a run)."""
        import asyncio  # not at the top: predial imports this module before asyncio

        if self.proc.poll() is not None:
            return
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except OSError:  # reaped meanwhile
            return
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        try:
            loop.add_reader(pidfd, lambda: None if ended.done() else ended.set_result(None))
            if self.proc.poll() is None:
                await ended
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        self.proc.poll()  # reaped

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
            for in_ssh in socket_fds(self.proc.pid):
                fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, in_ssh, 0)
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
    key: bytes,
    pinned: tuple[list[str], set[str]] | tuple[str, str],
    peer: str,
    timeout: float,
    connect_timeout: float,
    order: str | None = None,
) -> SshConnection:
    """Start ``ssh -s sftp`` with the key (unencrypted, OpenSSH format) in a memfd.
    ``pinned`` is either the helper's argv and the pins (ssh asks the helper about the
    key it is offered; ``order``: the HostKeyAlgorithms a pin file's types give) or,
    after a probe, a known_hosts line and the HostKeyAlgorithms for it (the line in a
    memfd)."""
    key_fd = _memfd("preserve-sink-key", key)
    here = f"/proc/{os.getpid()}/fd"
    fds = [key_fd]
    if isinstance(pinned[1], set):
        helper, pins = pinned
        checks = {
            "UserKnownHostsFile": "none",
            "KnownHostsCommand": known_hosts_command(list(helper), pins),
            "HostKeyAlgorithms": order or HOST_KEY_ORDER,
        }
    else:
        known, algorithms = pinned
        try:
            fds.append(_memfd("preserve-known-hosts", str(known).encode()))
        except BaseException:
            os.close(key_fd)
            raise
        checks = {"UserKnownHostsFile": f"{here}/{fds[1]}", "HostKeyAlgorithms": algorithms}
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
    conn.pins = pinned[1] if isinstance(pinned[1], set) else None
    return conn


_KEY_BEGIN, _KEY_END = b"-----BEGIN OPENSSH PRIVATE KEY-----", b"-----END OPENSSH PRIVATE KEY-----"
_KEY_MAGIC = b"openssh-key-v1\0"
KEY_READ_MAX = 1 << 16


def plain_openssh_key(data: bytes) -> bool:
    """Whether ``data`` is an OpenSSH private key without a passphrase (cipher "none"),
    which ssh can be given as it is, before asyncssh is even imported."""
    lines = data.strip().splitlines()
    if len(lines) < 3 or lines[0] != _KEY_BEGIN or lines[-1] != _KEY_END:
        return False
    try:
        raw = base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return False
    if not raw.startswith(_KEY_MAGIC) or len(raw) < len(_KEY_MAGIC) + 8:
        return False
    (size,) = struct.unpack_from(">I", raw, len(_KEY_MAGIC))
    return raw[len(_KEY_MAGIC) + 4 : len(_KEY_MAGIC) + 4 + size] == b"none"


def read_plain_key(path: Path) -> bytes | None:
    """The key file's bytes if ssh can take them as they are (no passphrase), else None."""
    with open(path, "rb") as f:
        data = f.read(KEY_READ_MAX)
    return data if plain_openssh_key(data) else None


@dataclass
class Early:
    """An ssh started before the rest of preserve was loaded, for ``connect`` to take
    over (or, if anything stops the run first, ``abort``)."""

    conn: SshConnection
    target: SftpTarget
    pins: set[str]
    timeout: float
    program: tuple[list[str], dict[str, Any]]
    order: str | None = None

    def fits(self, target: SftpTarget, pins: set[str], timeout: float, order: str | None) -> bool:
        return (self.target, self.pins, self.timeout, self.order) == (target, pins, timeout, order)

    def abort(self) -> None:
        self.conn.abort()


def dial(
    target: SftpTarget, host_key: str | None, client_key: Path | None, timeout: float | None
) -> Early | None:
    """Start ssh at once, when nothing needs asyncssh: a pin, a helper to check it (not in
    the frozen kit), and a client key without a passphrase in OpenSSH's format. Its
    login then runs on the other core while preserve loads; ``connect`` checks it all
    as before (the same refusals, from the same place) and takes this ssh over. None
    when any of it is missing: ``connect`` does it all then."""
    helper = helper_argv()
    if not host_key or client_key is None or helper is None:
        return None
    try:
        pins = pinned_fingerprints(host_key)
        order = pinned_key_order(host_key)
        key = read_plain_key(client_key)
        if key is None:
            return None
        program = ssh_program()
    except (OSError, UsageError):
        return None  # said by connect, in its words
    wait = timeout or TIMEOUT
    conn = spawn(program[0], target, key, (helper, pins), "", wait, CONNECT_TIMEOUT, order)
    return Early(conn, target, pins, wait, program, order)
