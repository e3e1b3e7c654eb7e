"""What stays open: ``--allow`` entries, the responder's SSH peer, resolved up front.

Host names are resolved once, before any rule exists (afterwards DNS is cut), and the
addresses they resolved to are what the journal records and the rules contain.

A PORT in an entry is a TCP or UDP port on either end of the connection: ``10.0.0.5:22``
lets 10.0.0.5 reach this host's port 22 and lets this host reach port 22 on 10.0.0.5."""

from __future__ import annotations

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from manifests.errors import UsageError

RESOLVE_TIMEOUT = 5.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowError(UsageError):
    """An --allow value that cannot be used (exit 2); the message says how to write it."""


@dataclass(frozen=True)
class AllowEntry:
    network: Network
    port: int | None
    source: str  # what the responder typed, or "SSH_CONNECTION"

    @property
    def family(self) -> int:
        return self.network.version

    def text(self) -> str:
        net = str(self.network)
        if self.network.prefixlen == self.network.max_prefixlen:
            net = str(self.network.network_address)
        if self.port is None:
            return net
        return f"[{net}]:{self.port}" if self.family == 6 else f"{net}:{self.port}"

    def describe(self) -> str:
        ports = "all ports" if self.port is None else f"port {self.port} tcp/udp"
        origin = "" if self.source == self.text() else f", from {self.source}"
        return f"{self.text()} ({ports}{origin})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": str(self.network),
            "family": self.family,
            "port": self.port,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AllowEntry:
        return cls(ipaddress.ip_network(d["network"]), d.get("port"), d.get("source", ""))


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise AllowError(f"--allow {whole}: {text!r} is not a port (1-65535)")
    return int(text)


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _resolve(name: str, whole: str) -> list[Network]:
    def lookup() -> list[Any]:
        return socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        infos = pool.submit(lookup).result(timeout=RESOLVE_TIMEOUT)
    except FutureTimeout as e:
        raise AllowError(
            f"--allow {whole}: resolving {name!r} took over {RESOLVE_TIMEOUT:.0f} s; "
            "give the address instead"
        ) from e
    except OSError as e:
        raise AllowError(
            f"--allow {whole}: cannot resolve {name!r} ({e}); give the address instead"
        ) from e
    finally:
        pool.shutdown(wait=False)
    found = {ipaddress.ip_network(i[4][0].split("%")[0]) for i in infos}
    return sorted(found, key=lambda n: (n.version, int(n.network_address)))


def parse_allow(text: str) -> list[AllowEntry]:
    """``ADDR``, ``ADDR/LEN``, ``ADDR[/LEN]:PORT``, ``[V6[/LEN]]:PORT``, ``NAME[:PORT]``.

    >>> [e.text() for e in parse_allow("[fd00::2]:22") + parse_allow("10.0.0.0/24:443")]
    ['[fd00::2]:22', '10.0.0.0/24:443']
    """
    whole = text.strip()
    if not whole:
        raise AllowError("--allow needs a value such as 10.0.0.5, 10.0.0.0/24:22 or [fd00::5]:22")
    port: int | None = None
    bracket = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", whole)
    if bracket:
        host = bracket.group(1)
        if bracket.group(2) is not None:
            port = _port(bracket.group(2), whole)
    elif _network(whole) is not None:
        host = whole
    elif whole.count(":") == 1:
        host, _, port_text = whole.partition(":")
        port = _port(port_text, whole)
    else:
        host = whole
    net = _network(host)
    if net is not None:
        return [AllowEntry(net, port, whole)]
    if "/" in host or ":" in host or not re.fullmatch(r"[A-Za-z0-9._-]+", host):
        raise AllowError(
            f"--allow {whole}: not an address, network or host name; write e.g. "
            "10.0.0.5, 10.0.0.0/24:22, [fd00::5]:22 or jump.example.org"
        )
    return [AllowEntry(n, port, whole) for n in _resolve(host, whole)]


def ssh_peer(environ: dict[str, str]) -> AllowEntry | None:
    """The responder's own SSH session: its client address, on this host's SSH port."""
    fields = environ.get("SSH_CONNECTION", "").split()
    if len(fields) != 4:
        return None
    net = _network(fields[0].split("%")[0])
    if net is None or not fields[3].isdigit():
        return None
    return AllowEntry(net, int(fields[3]), "SSH_CONNECTION")


def build_allowlist(values: list[str], environ: dict[str, str], keep_ssh: bool) -> list[AllowEntry]:
    entries: list[AllowEntry] = []
    for value in values:
        entries.extend(parse_allow(value))
    peer = ssh_peer(environ) if keep_ssh else None
    if peer is not None:
        entries.append(peer)
    return list(dict.fromkeys(entries))
