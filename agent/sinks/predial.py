"""ssh for a remote ``-o``, started from the raw command line before the rest of preserve
is imported.

Logging in to the server takes about 0.19 s (the key exchange, the server starting its
session) and importing preserve about 0.25 s; started first, ssh logs in on the other
core meanwhile and the upload's first byte leaves some 0.1 s sooner (bench/RESULTS.md).

The command line is only guessed at here: click parses it later, and ``take`` hands
this ssh over only when what click parsed is exactly what was guessed. Anything else (a
different value, a subcommand, ``--help``, a dry run, an error before the collection
reaches its destination) leaves it unused, and ``abandon`` ends it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..commands import SUBCOMMANDS

if TYPE_CHECKING:
    from .sshproc import Early
    from .target import SftpTarget

VALUED = {  # the long option, and the short one where there is one
    "--output": "-o",
    "--sink-host-key": None,
    "--sink-key": None,
    "--sink-timeout": None,
    "--sink-transport": None,
}
# What never connects: help, the version, the isolation plan shown and nothing done.
NOT_A_RUN = {"-h", "--help", "--version", "--dry-run"}


@dataclass(frozen=True)
class Guess:
    """The sink options as the command line seems to give them."""

    output: str
    host_key: str
    client_key: Path
    timeout: float | None
    transport: str


def guess(argv: list[str]) -> Guess | None:
    """The remote ``-o`` and its options, or None when the command line is not plainly
    a collection to an ``sftp://`` URL over OpenSSH (nothing is started then)."""
    seen: dict[str, str] = {}
    short = {s: long for long, s in VALUED.items() if s}
    words = iter(argv)
    for word in words:
        if word == "--" or word in NOT_A_RUN or word in SUBCOMMANDS:
            return None
        name, eq, value = word.partition("=")
        if name in short or name in VALUED:
            if not eq:
                value = next(words, "")
            seen[short.get(name, name)] = value
        elif word[:2] in short and not word.startswith("--"):
            seen[short[word[:2]]] = word[2:]  # -oVALUE
    output, host_key, key = (seen.get(n, "") for n in ("--output", "--sink-host-key", "--sink-key"))
    transport = seen.get("--sink-transport", "openssh")
    if not output.startswith("sftp://") or not host_key or not key or transport != "openssh":
        return None
    try:
        timeout = float(seen["--sink-timeout"]) if "--sink-timeout" in seen else None
    except ValueError:
        return None
    return Guess(output, host_key, Path(key), timeout, transport)


_started: tuple[Guess, Early] | None = None


def predial(argv: list[str]) -> None:
    """Start ssh if the command line plainly asks for a remote destination; any doubt,
    or anything ``sshproc.dial`` would not start early, starts nothing."""
    global _started
    wanted = guess(argv)
    if wanted is None:
        return
    from .sshproc import dial
    from .target import parse_target

    try:
        target = parse_target(wanted.output)
        early = dial(target, wanted.host_key, wanted.client_key, wanted.timeout)
    except Exception:  # a bad value: click says it later, in its own words
        return
    if early is not None:
        _started = (wanted, early)


def take(
    output: SftpTarget,
    host_key: str | None,
    client_key: Path | None,
    timeout: float | None,
    transport: str,
) -> Early | None:
    """The ssh started from the command line, if click parsed the same options; if not,
    it is ended and None returned (the caller dials as it would have)."""
    global _started
    if _started is None:
        return None
    (wanted, early), _started = _started, None
    parsed = (output, host_key, client_key, timeout, transport)
    if (early.target, wanted.host_key, wanted.client_key, wanted.timeout,
            wanted.transport) == parsed:  # fmt: skip
        return early
    early.abort()
    return None


def abandon() -> None:
    """End an ssh started here that no collection took (called as preserve exits)."""
    global _started
    if _started is not None:
        _started[1].abort()
        _started = None
