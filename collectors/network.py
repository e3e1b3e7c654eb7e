"""``network``: sockets, interfaces, routes, neighbours, DNS and firewall configuration.

Sockets come from the snapshot ``processes`` took (so both tables describe the same
moment), or from a socket-only snapshot when run alone. Interfaces and counters come from
psutil; routes and the IPv4 neighbour cache from ``/proc/net``. What neither offers
(IPv4 routing tables other than ``main``, the IPv6 neighbour cache, the firewall
ruleset) comes from ``ip``, ``nft`` and ``iptables-save``, each run recorded with its
exact argv and its output stored (see ``hostcmd``).

Outputs under ``artifacts/volatile/``: ``sockets.jsonl``, ``sockets.txt`` (``ss``-like),
``network.json`` (interfaces, counters, routes, neighbours, listening services,
connections to non-local addresses), ``commands/*`` and ``firewall/*``; DNS files are
preserved byte-exact under ``artifacts/system/etc/``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any, ClassVar

import psutil

from . import snapshot
from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .hostcmd import run_recorded
from .textview import json_bytes, jsonl, table

OUT = "artifacts/volatile"
DNS_FILES = (b"/etc/resolv.conf", b"/etc/hosts", b"/etc/nsswitch.conf", b"/etc/host.conf")
if LINUX:
    from . import _linux

_AF_NAMES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", psutil.AF_LINK: "link"}


def is_local(addr: object) -> bool:
    """Loopback, unspecified or not an address: not a connection to another host."""
    if not isinstance(addr, str) or not addr:
        return True
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def interfaces() -> dict[str, Any]:
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    counters = psutil.net_io_counters(pernic=True)
    result: dict[str, Any] = {}
    for name in sorted(set(addrs) | set(stats)):
        st = stats.get(name)
        entry: dict[str, Any] = {
            "addresses": [
                {
                    "family": _AF_NAMES.get(a.family, str(int(a.family))),
                    "address": a.address,
                    "netmask": a.netmask,
                    "broadcast": a.broadcast,
                }
                for a in addrs.get(name, [])
            ],
            "mac": next(
                (a.address for a in addrs.get(name, []) if a.family == psutil.AF_LINK), None
            ),
        }
        if st:
            entry.update(
                up=st.isup,
                mtu=st.mtu,
                speed_mbps=st.speed,
                duplex=str(st.duplex.name) if hasattr(st.duplex, "name") else st.duplex,
                flags=getattr(st, "flags", None),
            )
        if name in counters:
            entry["counters"] = counters[name]._asdict()
        result[name] = entry
    return result


class NetworkCollector(Collector):
    name: ClassVar[str] = "network"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 20
    default: ClassVar[bool] = True
    description: ClassVar[str] = "sockets, interfaces, routes, neighbours, DNS and firewall"

    def collect(self, ctx: CollectContext) -> None:
        snap = ctx.shared.get(snapshot.SHARED_KEY) or snapshot.sockets_only(ctx)
        # Without ``processes`` in the run, names are looked up once per pid, after the
        # snapshot (a pid that exited meanwhile keeps no name).
        index: dict[int, dict[str, Any]] = dict(ctx.shared.get("process_index", {}))
        sockets = [self._with_process(s, index) for s in snap.sockets]
        ctx.engine.store_bytes(
            f"{OUT}/sockets.jsonl", jsonl(sockets), self.name, kind="socket-table"
        )
        ctx.engine.store_bytes(
            f"{OUT}/sockets.txt", self._text(sockets, snap).encode(), self.name, kind="socket-view"
        )
        data: dict[str, Any] = {
            "snapshot": snap.timing,
            "listening": self._listening(sockets),
            "remote_established": [
                s for s in sockets if s["status"] == "ESTABLISHED" and not is_local(s["raddr"])
            ],
            "interfaces": interfaces(),
        }
        data.update(self._proc_tables(ctx))
        ctx.engine.store_bytes(f"{OUT}/network.json", json_bytes(data), self.name, kind="network")
        self._commands(ctx)
        for path in DNS_FILES:
            self._preserve_config(ctx, path)

    @staticmethod
    def _with_process(s: dict[str, Any], index: dict[int, dict[str, Any]]) -> dict[str, Any]:
        proc = index.get(s["pid"]) if s["pid"] is not None else None
        if proc is None and s["pid"] is not None:
            try:
                proc = {"name": psutil.Process(s["pid"]).name()}
            except psutil.Error:
                proc = {}
            index[s["pid"]] = proc
        proc = proc or {}
        exe = proc.get("executable") or {}
        return {
            **s,
            "process": proc.get("name"),
            "exe": proc.get("exe"),
            "exe_sha256": exe.get("sha256"),
        }

    @staticmethod
    def _listening(sockets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = ("proto", "family", "laddr", "lport", "pid", "process", "exe", "exe_sha256")
        rows = [
            {k: s[k] for k in keys}
            for s in sockets
            if s["family"] != "unix"
            and (s["status"] == "LISTEN" or (s["proto"] == "udp" and not s["raddr"]))
        ]
        return sorted(rows, key=lambda r: (r["proto"], r["lport"] or 0, r["laddr"] or ""))

    def _proc_tables(self, ctx: CollectContext) -> dict[str, Any]:
        if not LINUX:
            ctx.engine.record_skip(self.name, b"/proc/net", f"no /proc/net on {sys.platform}")
            return {}
        tables: dict[str, Any] = {}
        for key, reader, path in (
            ("routes_ipv4_main", _linux.routes_ipv4, "/proc/net/route"),
            ("routes_ipv6", _linux.routes_ipv6, "/proc/net/ipv6_route"),
            ("arp", _linux.arp_cache, "/proc/net/arp"),
        ):
            try:
                tables[key] = reader()
            except OSError as e:
                tables[key] = None
                ctx.error(self.name, f"cannot read: {e.strerror}", path.encode())
        return tables

    def _commands(self, ctx: CollectContext) -> None:
        """Sources with no /proc file or library call; each run is journalled."""
        if not LINUX:
            return
        for argv, stored in (
            (
                ["ip", "-json", "-4", "route", "show", "table", "all"],
                "commands/ip-4-route-all.json",
            ),
            (
                ["ip", "-json", "-6", "route", "show", "table", "all"],
                "commands/ip-6-route-all.json",
            ),
            (["ip", "-json", "neigh", "show"], "commands/ip-neigh.json"),
            (["ip", "-json", "rule", "show"], "commands/ip-rule.json"),
            (["nft", "--json", "list", "ruleset"], "firewall/nft-ruleset.json"),
            (["iptables-save"], "firewall/iptables-save.txt"),
            (["ip6tables-save"], "firewall/ip6tables-save.txt"),
        ):
            run_recorded(ctx, self.name, argv, f"{OUT}/{stored}", kind="command-output")

    def _preserve_config(self, ctx: CollectContext, path: bytes) -> None:
        """Copy a DNS file; a symlink (systemd-resolved) is recorded and its target copied."""
        if not os.path.lexists(path):
            return
        dest = f"artifacts/system/{path.decode().lstrip('/')}"
        if os.path.islink(path):
            target = os.path.realpath(path)
            ctx.engine.preserve(path, dest, self.name)
            if os.path.exists(target):
                ctx.preserve_tree(target, "system", self.name)
            return
        ctx.engine.preserve(path, dest, self.name, kind="dns-config")

    @staticmethod
    def _text(sockets: list[dict[str, Any]], snap: snapshot.Snapshot) -> str:
        def endpoint(addr: str | None, port: int | None) -> str:
            if addr is None and port is None:
                return "*"
            addr = addr or "*"
            if ":" in addr and port is not None:
                addr = f"[{addr}]"
            return f"{addr}:{port}" if port is not None else addr

        order = {"tcp": 0, "udp": 1, "unix": 3}
        rows = sorted(sockets, key=lambda s: (order.get(s["proto"], 2), s["lport"] or 0))
        t = snap.timing
        head = (
            f"# sockets at {t.get('wall_start')} .. {t.get('wall_end')}, {len(sockets)} sockets\n"
        )
        return head + table(
            ["NETID", "STATE", "LOCAL", "PEER", "PID", "PROCESS"],
            [
                [
                    s["proto"] + ("6" if s["family"] == "inet6" else ""),
                    s["status"] or "-",
                    endpoint(s["laddr"], s["lport"]),
                    endpoint(s["raddr"], s["rport"]),
                    s["pid"] if s["pid"] is not None else "-",
                    s["process"] or "-",
                ]
                for s in rows
            ],
        )
