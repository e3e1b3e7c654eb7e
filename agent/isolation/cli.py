"""The isolation options of ``preserve`` and turning them into an ``Isolation`` step.

Everything that can be wrong with the options (unknown method, bad --allow, an
unresolvable host name) is found here, before collection starts: exit 2, nothing done."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from manifests.errors import UsageError
from manifests.fstype import probe

from .allowlist import AllowEntry, build_allowlist
from .base import Request, parse_probe
from .engine import Isolation
from .registry import choose

OPTIONS = [
    click.option(
        "--isolate", is_flag=True, help="Cut the host off the network after the volatile snapshot."
    ),
    click.option(
        "--allow",
        "allow",
        multiple=True,
        metavar="ADDR[/LEN][:PORT]",
        help="Keep this address, network or host name reachable (repeatable; [v6]:port).",
    ),
    click.option(
        "--isolation-method",
        default="auto",
        show_default=True,
        metavar="NAME",
        help="auto, nftables, iptables, link-down, exec:PATH or a plug-in's name.",
    ),
    click.option(
        "--no-keep-ssh",
        is_flag=True,
        help="Do not keep the peer of this SSH session (SSH_CONNECTION) reachable.",
    ),
    click.option("--allow-dns", is_flag=True, help="Keep DNS (port 53) open: a tunnelling path."),
    click.option("--allow-dhcp", is_flag=True, help="Keep DHCP open, so the lease can renew."),
    click.option(
        "--probe",
        "probes",
        multiple=True,
        metavar="ADDR:PORT",
        help="A non-allowlisted address the cut must block (default: a documentation address).",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="With --isolate: print the exact rules and commands, change and collect nothing.",
    ),
]

NAMES = (
    "isolate",
    "allow",
    "isolation_method",
    "no_keep_ssh",
    "allow_dns",
    "allow_dhcp",
    "probes",
    "dry_run",
)


def prepare(options: dict[str, Any], ident: str) -> Isolation | None:
    """Pop the isolation options; None when --isolate was not given."""
    opts = {name: options.pop(name, None) for name in NAMES}
    if not opts["isolate"]:
        used = [
            f"--{n.replace('_', '-')}" for n in NAMES[1:] if opts[n] and n != "isolation_method"
        ]
        if opts["isolation_method"] not in (None, "auto"):
            used.append("--isolation-method")
        if used:
            raise UsageError(f"{', '.join(used)} only make sense with --isolate")
        return None
    # AllowError, MethodError and a bad --probe are UsageErrors: exit 2, nothing collected.
    allow = build_allowlist(list(opts["allow"] or ()), dict(os.environ), not opts["no_keep_ssh"])
    probes = [parse_probe(p) for p in opts["probes"] or ()]
    name = opts["isolation_method"] or "auto"
    if not opts["dry_run"] and not name.startswith("exec:") and os.geteuid() != 0:
        raise UsageError(
            "--isolate changes the firewall and needs root",
            hint="run it again with sudo (nothing was collected)",
        )
    warnings: list[str] = []
    method = choose(name, lambda n, e: warnings.append(f"{n}: {e}"))
    for warning in warnings:
        click.echo(f"WARNING: isolation plug-in {warning} (skipped)", err=True)
    request = Request(
        allow=allow,
        allow_dns=bool(opts["allow_dns"]),
        allow_dhcp=bool(opts["allow_dhcp"]),
        ident=ident,
    )
    isolation = Isolation(method, request, probes)
    isolation.dry = bool(opts["dry_run"])
    return isolation


def keep_reachable(isolation: Isolation, address: str, port: int) -> None:
    """The evidence server (``-o sftp://``) stays reachable through the cut: its address
    and port join the allowlist, recorded with the rest (source ``sftp sink``)."""
    entry = AllowEntry(ipaddress.ip_network(address), port, "sftp sink")
    if entry not in isolation.request.allow:
        isolation.request.allow = [*isolation.request.allow, entry]


REMOTE_STATE_HOME = Path("/run/preserve")
MEMORY_FS = ("tmpfs", "ramfs")


def state_in_memory(
    isolation: Isolation, locate: Callable[[str], str], home: Path = REMOTE_STATE_HOME
) -> None:
    """A remote output has no kit drive beside the evidence to hold the release state,
    and the host's disk must not hold it: it goes to ``/run/preserve``, checked to be on
    a memory file system first (exit 2 otherwise, before anything is collected)."""
    try:
        fd = os.open(home.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        fs = f"not usable: {e.strerror}"
    else:
        try:
            fs = probe(fd).name
        finally:
            os.close(fd)
    if fs not in MEMORY_FS:
        raise UsageError(
            f"--isolate with an sftp:// output keeps its release state in {home}, but "
            f"{home.parent} is not in memory here ({fs}): the state would land on the host's disk",
            hint="isolate with a local -o on the kit's drive, or cut the network by hand",
        )
    isolation.state_home, isolation.locate = home, locate
