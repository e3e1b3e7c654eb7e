"""Where evidence goes: ``open_destination`` turns ``-o`` into a way to make the run's
evidence directory, a local directory or a directory on an SFTP server.

Everything that can refuse a remote destination (the URL, the pinned host key, the
client key, the server's fsync) is checked here, before anything is collected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.errors import EvidenceLostError
from manifests.sink import Sink

from .target import SftpTarget, is_remote, parse_target

__all__ = ["Destination", "SftpTarget", "dial", "is_remote", "open_destination", "parse_target"]


@dataclass
class Destination:
    """``open_sink(name)`` makes the new evidence directory; None means a local ``-o``
    (the writer's own ``LocalDirSink``). ``record`` goes into the journal's start.
    ``after_loss`` is given the error that lost the directory and the run's signer, and
    returns the error to end with: a remote sink seals there if the server comes back
    (its third argument names a stop signal received meanwhile, which ends the wait)."""

    target: SftpTarget | None = None
    open_sink: Callable[[str], Sink] | None = None
    record: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None
    after_loss: Callable[..., EvidenceLostError] = lambda e, s, stop=None: e


def open_destination(
    output: Path | SftpTarget,
    host_key: str | None = None,
    client_key: Path | None = None,
    no_fsync: bool = False,
    timeout: float | None = None,
    reconnect: float | None = None,
    transport: str = "openssh",
    early: Any = None,
    meanwhile: Callable[[], object] | None = None,
    on_retry: Callable[[str], None] = lambda text: None,
) -> Destination:
    if not isinstance(output, SftpTarget):
        return Destination()
    from .connect import TIMEOUT, connect  # only a remote run loads it

    return connect(
        output,
        host_key,
        client_key,
        no_fsync,
        timeout or TIMEOUT,
        reconnect,
        transport,
        early,
        meanwhile,
        on_retry,
    )


def dial(
    output: Path | SftpTarget,
    host_key: str | None,
    client_key: Path | None,
    timeout: float | None,
    transport: str,
) -> Any:
    """For a remote ``-o`` over OpenSSH, ssh started now (``sshproc.dial``), to be given to
    ``open_destination`` later, or aborted; None when there is nothing to start early."""
    from .predial import abandon, take

    if not isinstance(output, SftpTarget) or transport != "openssh":
        abandon()  # one started from a command line click read otherwise: not kept
        return None

    early = take(output, host_key, client_key, timeout, transport)  # from the command line
    if early is not None:
        return early
    from .sshproc import dial as start_ssh  # no asyncssh

    return start_ssh(output, host_key, client_key, timeout)
