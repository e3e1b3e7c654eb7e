"""Connecting to the evidence server: pinned host key, the upload key, and the
capabilities the sink needs (fsync, rename), all settled before collection starts.

Two transports carry the same SFTP session: ``openssh`` (the default: OpenSSH's ``ssh``
as a subprocess, see ``openssh``) and ``asyncssh`` (pure Python, in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from manifests.errors import EvidenceLostError
from manifests.signing import Signer

from . import Destination
from ._loop import link_errors, offers
from ._ssh import theirs
from .openssh import helper_argv, known_line, probe, spawn, ssh_program, start
from .reseal import reseal
from .sftp import TIMEOUT, SftpSink, _Loop
from .sftpcodec import link_lost, no_such_file, status_errors
from .sidefsync import SideFsync
from .sshpeer import connected_peer
from .sshproc import Early, read_plain_key
from .target import (
    CONNECT_TIMEOUT,
    SftpTarget,
    SinkRefusedError,
    pinned_fingerprints,
    pinned_key_order,
)

STOP_POLL = 0.2  # seconds between looks at a stop signal while reconnecting
RETRY_FIRST_WAIT = 0.5  # seconds before a turned-away first connection is tried again
# ssh's words (and asyncssh's reset) for a server that closed before its banner.
TURNED_AWAY = ("kex_exchange_identification", "Connection reset by peer")


def _failures() -> tuple[type[BaseException], ...]:
    """What connecting raises when it fails, from either transport (asyncssh's once it
    is loaded: the frozen kit's probe loads it during the attempt)."""
    return (OSError, TimeoutError, *theirs("Error"))


def _asyncssh_opener() -> Callable[..., Any]:
    from .asyncssh_client import open_asyncssh  # loads asyncssh: only for that transport

    return open_asyncssh


def _client_key(path: Path | None, transport: str) -> Any:
    """For OpenSSH, a key it can take as it is stays bytes (no asyncssh loaded); any
    other is read, and decrypted, by asyncssh."""
    if path is None:
        raise SinkRefusedError(
            "an sftp:// output needs --sink-key KEY (the upload account's private key)"
        )
    try:
        plain = read_plain_key(path)
    except OSError as e:
        raise SinkRefusedError(f"--sink-key {path}: {e.strerror}") from e
    if transport == "openssh" and plain is not None:
        return plain
    from .asyncssh_client import read_key

    return read_key(path)


class _OpenSsh:
    """Opens sessions through ``ssh``; remembers each process so that an interrupted
    connect (Ctrl-C in a reconnect) leaves none running."""

    def __init__(self, early: Early | None = None, order: str | None = None) -> None:
        self.program, self.record = early.program if early else ssh_program()
        self.order = order  # HostKeyAlgorithms from a pin file's key types, if it says them
        self.helper = helper_argv()  # None in the frozen kit: the asyncssh probe there
        self.early = early  # the first session's ssh, started while preserve was loading
        self.spawned: list[Any] = [early.conn] if early else []

    async def __call__(
        self, target: SftpTarget, pins: set[str], key: Any, timeout: float, wait: float
    ) -> tuple[Any, Any, str | None]:
        early, self.early = self.early, None
        if self.helper is not None:
            pinned: Any = (self.helper, pins)
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM
            )
            peer = str(infos[0][4][0])
        else:
            pinned, peer = await probe(target, pins, wait)
        if early is not None and early.fits(target, pins, timeout, self.order):
            conn = early.conn
        else:
            if early is not None:
                early.conn.abort()
            key_bytes = key if isinstance(key, bytes) else key.export_private_key("openssh")
            conn = spawn(
                self.program,
                target,
                key_bytes,
                known_line(pinned) if self.helper is None else pinned,
                peer,
                timeout,
                wait,
                self.order,
            )
            self.spawned.append(conn)
        try:
            sftp = await asyncio.wait_for(start(conn), wait)
        except BaseException:
            conn.abort()
            raise
        # What ssh reached (it resolves the name itself); the guess only if unreadable.
        conn.peer = (connected_peer(conn.proc.pid, target.port) or peer, target.port)
        if self.helper is None:
            return conn, sftp, pinned.get_fingerprint("sha256")
        return conn, sftp, conn.host_key

    def kill(self) -> None:
        for conn in self.spawned:
            if conn.proc.poll() is None:
                conn.abort()


def _turned_away(e: BaseException) -> bool:
    """The server closed or reset the connection before its banner: what sshd does past
    MaxStartups (a fleet's hosts all connecting at once), or a firewall's reset. To
    asyncssh that is a reset or, as often, a plain loss."""
    if isinstance(e, (ConnectionResetError, *theirs("ConnectionLost"))):
        return True
    return any(w in str(e) for w in TURNED_AWAY)


def _first_session(
    loop: _Loop,
    target: SftpTarget,
    open_session: Callable[[], Coroutine[Any, Any, Any]],
    within: float,
    meanwhile: Callable[[], object] | None,
    on_retry: Callable[[str], None],
) -> tuple[Any, Any, str | None, int]:
    """The first session, and how many attempts it took. A server that turned the
    connection away is tried again for up to ``within`` seconds, after waits that double
    and are spread at random, so that a fleet's hosts do not all come back at once.
    Nothing has been collected yet: trying again costs only time."""
    began, wait, attempts = time.monotonic(), RETRY_FIRST_WAIT, 0
    while True:
        attempts += 1
        attempt = loop.submit(open_session())
        if meanwhile is not None:
            with contextlib.suppress(Exception):
                meanwhile()
            meanwhile = None
        try:
            conn, sftp, seen = attempt.result(CONNECT_TIMEOUT + 5)
            return conn, sftp, seen, attempts
        except _failures() as e:
            if not _turned_away(e):
                raise
            pause = wait * random.uniform(0.5, 1.5)
            if time.monotonic() - began + pause > within:
                raise SinkRefusedError(
                    f"{target}: the server turned the connection away before "
                    f"logging in, {attempts} times in {time.monotonic() - began:.0f} s ({e})",
                    hint="a busy sshd does that past its MaxStartups: raise it on the server "
                    "(docs/remote.md) or run again; a firewall or fail2ban there does too",
                ) from e
            on_retry(
                f"the evidence server turned the connection away before logging in ({e}), "
                f"as a busy sshd does; trying again in {pause:.1f} s"
            )
            time.sleep(pause)
            wait *= 2


async def _can_rename(sftp: Any, path: str) -> bool:
    """Renaming two names that do not exist tells, without creating anything, whether
    the account may rename: 'no such file' if it may, 'permission denied' if not."""
    if not offers(sftp, "posix_rename"):
        return False
    probe = f"{path.rstrip('/')}/.preserve-rename-probe"
    try:
        await sftp.posix_rename(probe, probe + "2")
    except no_such_file():
        return True
    except link_lost():
        raise  # a lost link, from either transport: not an answer
    except status_errors():
        return False
    return True


def connect(
    target: SftpTarget,
    host_key: str | None,
    client_key: Path | None,
    no_fsync: bool,
    timeout: float = TIMEOUT,
    reconnect: float | None = None,
    transport: str = "openssh",
    early: Early | None = None,
    meanwhile: Callable[[], object] | None = None,
    on_retry: Callable[[str], None] = lambda text: None,
) -> Destination:
    """The sink, connected and checked; ``early``: the ssh ``sshproc.dial`` started;
    ``meanwhile``: work for this thread while the connection is made (its errors are
    ignored here: it is the caller's to do again); ``on_retry``: told, in a sentence for
    the terminal, when a server that turned the connection away is tried again."""
    if not host_key:
        raise SinkRefusedError(
            f"{target}: the server's host key must be pinned with --sink-host-key "
            "SHA256:... (as 'ssh-keygen -lf' prints it on the server) or a known_hosts file"
        )
    pins = pinned_fingerprints(host_key)
    key = _client_key(client_key, transport)
    opener = _OpenSsh(early, pinned_key_order(host_key)) if transport == "openssh" else None
    _open = opener or _asyncssh_opener()
    loop = _Loop()
    try:
        try:
            first = functools.partial(_open, target, pins, key, timeout, CONNECT_TIMEOUT)
            conn, sftp, seen, attempts = _first_session(
                loop, target, first, min(CONNECT_TIMEOUT, timeout), meanwhile, on_retry
            )
        except theirs("HostKeyNotVerifiable") as e:
            raise SinkRefusedError(
                f"{target}: the server's host key is not the pinned one; refusing to send "
                "evidence there",
                hint="check the fingerprint on the server with 'ssh-keygen -lf' and pin it",
            ) from e
        except theirs("PermissionDenied") as e:
            raise SinkRefusedError(f"{target}: the server refused the key {client_key}") from e
        except _failures() as e:
            if "Host key verification failed" in str(e):  # ssh's own words
                raise SinkRefusedError(
                    f"{target}: the server's host key is not the pinned one; refusing to send "
                    "evidence there"
                ) from e
            if "Permission denied" in str(e):
                raise SinkRefusedError(f"{target}: the server refused the key {client_key}") from e
            raise SinkRefusedError(f"{target}: cannot connect ({e})") from e
        fsync_ok = offers(sftp, "fsync")
        if not fsync_ok and not no_fsync:
            conn.close()
            raise SinkRefusedError(
                f"{target}: the server does not offer fsync@openssh.com, so a seal could "
                "vouch for bytes not yet on its disk",
                hint="use an OpenSSH server, or accept it with --sink-no-fsync (recorded)",
            )
        try:
            renames = loop.run(_can_rename(sftp, target.path))
        except link_errors() as e:
            raise SinkRefusedError(f"{target}: cannot connect (lost while checking it: {e})") from e
    except BaseException:
        if opener is not None:
            opener.kill()
        loop.stop()
        raise
    sink = SftpSink(loop, conn, sftp, target, fsync_ok, renames)
    sink.timeout = timeout
    peer = str(conn.get_extra_info("peername")[0])  # the address --isolate keeps open
    if fsync_ok:  # the fsyncs off the streaming session's way (sidefsync)
        # That address, not the name again: with round-robin DNS it could be another
        # server.
        same = dataclasses.replace(target, host=peer)
        attempt = loop.submit(_open(same, pins, key, timeout, CONNECT_TIMEOUT))
        sink.side = SideFsync(attempt, timeout / 2)
    record = {
        "url": str(target),
        "peer": peer,
        "host_key": seen,
        "transport": transport,
        "connect_attempts": attempts,
        **(opener.record if opener else {}),
        "fsync": fsync_ok,
        "fsync_session": "separate" if sink.side is not None else "same",
        "in_place": not renames,
        "timeout_s": int(timeout),
        "reconnect_s": int(timeout if reconnect is None else reconnect),
    }
    if not fsync_ok:
        record["no_fsync_accepted"] = True

    stopped: list[Callable[[], str | None]] = [lambda: None]

    def reopen(within: float) -> SftpSink:
        """The same server, the same pins and key, on a new loop (after a loss). Waits in
        short slices, so a stop signal (Ctrl-C) ends an attempt at once."""
        again = _Loop()
        wait = min(CONNECT_TIMEOUT, within)
        try:
            attempt = again.submit(_open(target, pins, key, timeout, wait))
            deadline = time.monotonic() + wait + 5
            while True:
                try:
                    conn, sftp, _ = attempt.result(STOP_POLL)
                    break
                except TimeoutError:
                    if stopped[0]() is None and time.monotonic() < deadline:
                        continue
                    attempt.cancel()
                    raise
        except theirs("HostKeyNotVerifiable") as e:
            again.stop()
            raise SinkRefusedError("its host key is not the pinned one") from e
        except BaseException:
            if opener is not None:
                opener.kill()
            again.stop()
            raise
        return sink.on(again, conn, sftp, offers(sftp, "fsync"))

    def after_loss(
        lost: EvidenceLostError, signer: Signer, stop: Callable[[], str | None] = lambda: None
    ) -> EvidenceLostError:
        if lost is not sink.lost:
            return lost
        stopped[0] = stop
        return reseal(sink, reopen, signer, timeout if reconnect is None else reconnect, stop)

    def close() -> None:
        with contextlib.suppress(Exception):
            sink.close()
        if opener is not None:
            opener.kill()  # any ssh an orderly close did not end (both sessions' too)

    return Destination(target, sink.create_new, record, close, after_loss)
