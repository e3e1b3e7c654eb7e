"""The kernel's own socket tables, with inodes, and the sockets no process holds.

psutil lists TCP, UDP and UNIX sockets and names an owner only among the PIDs it listed;
it has no packet or raw sockets at all, which is where BPFDoor-style backdoors listen.
Here every row of ``/proc/net/{tcp,tcp6,udp,udp6,raw,raw6,packet}`` keeps its inode, and
its owners come from the cross-view fd scan (collectors/crossview.py), which covers
hidden PIDs too. A socket with an inode that no descriptor of any process points at is
*ownerless*: a hidden owner, or a descriptor in flight (SCM_RIGHTS), or a kernel service
(nfsd, WireGuard). UNIX sockets are not judged: in-flight and kernel ones are common.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from .crossview import PROC, Survey

TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
_INET_TABLES = (
    ("tcp", "inet", "tcp"),
    ("tcp6", "inet6", "tcp"),
    ("udp", "inet", "udp"),
    ("udp6", "inet6", "udp"),
    ("raw", "inet", "raw"),
    ("raw6", "inet6", "raw"),
)
_PACKET_TYPES = {1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket", 10: "packet"}


def _addr(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    else:  # four 32-bit words, each in the host's byte order
        words = struct.unpack(">4I", raw)
        ip = socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words))
    return ip, int(port, 16)


def _read(name: str) -> list[str]:
    with open(f"{PROC}/net/{name}", "rb") as f:
        return f.read(64 << 20).decode("ascii", "replace").splitlines()[1:]


def read_tables(unreadable: dict[str, str]) -> list[dict[str, Any]]:
    """Every inet, raw and packet socket of this network namespace, with its inode."""
    rows: list[dict[str, Any]] = []
    for table, family, proto in _INET_TABLES:
        try:
            lines = _read(table)
        except OSError as e:
            if not isinstance(e, FileNotFoundError):  # no IPv6: nothing to say
                unreadable[f"/proc/net/{table}"] = e.strerror or str(e)
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10:
                continue
            laddr, lport = _addr(f[1])
            raddr, rport = _addr(f[2])
            state = int(f[3], 16)
            rows.append(
                {
                    "table": table,
                    "family": family,
                    "proto": proto,
                    "laddr": laddr,
                    "lport": lport,
                    "raddr": raddr,
                    "rport": rport,
                    "status": TCP_STATES.get(state, str(state)) if proto == "tcp" else None,
                    "uid": int(f[7]),
                    "inode": int(f[9]),
                }
            )
    try:
        lines = _read("packet")
    except OSError as e:
        unreadable["/proc/net/packet"] = e.strerror or str(e)
        lines = []
    for line in lines:
        f = line.split()
        if len(f) < 9:
            continue
        rows.append(
            {
                "table": "packet",
                "family": "packet",
                "proto": "packet",
                "type": _PACKET_TYPES.get(int(f[2]), f[2]),
                "ethertype": f"0x{int(f[3], 16):04x}",
                "ifindex": int(f[4]),
                "uid": int(f[7]),
                "inode": int(f[8]),
            }
        )
    return rows


def _task_fd_owners(survey: Survey, wanted: set[int]) -> None:
    """A thread made without CLONE_FILES has its own descriptor table: look there for
    the inodes no process-level table held (rare, so only then)."""
    for pid in survey.pids():
        try:
            tids = os.listdir(f"{PROC}/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            if tid == str(pid):
                continue
            base = f"{PROC}/{pid}/task/{tid}/fd"
            try:
                fds = os.listdir(base)
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"{base}/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode in wanted and pid not in survey.socket_owners.get(inode, []):
                        survey.socket_owners.setdefault(inode, []).append(pid)


def attach_owners(rows: list[dict[str, Any]], survey: Survey) -> list[dict[str, Any]]:
    """Give each row its owners; return the ownerless ones (inode 0 is a socket with no
    file at all, such as TIME_WAIT: not judged)."""
    wanted = {r["inode"] for r in rows if r["inode"] and r["inode"] not in survey.socket_owners}
    if wanted:
        _task_fd_owners(survey, wanted)
    ownerless = []
    for r in rows:
        r["pids"] = sorted(set(survey.socket_owners.get(r["inode"], [])))
        if r["inode"] and not r["pids"]:
            ownerless.append(r)
    return ownerless


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    remote = (r["raddr"], r["rport"])
    if not r["rport"] and r["raddr"] in (None, "0.0.0.0", "::"):
        remote = (None, None)
    return (r["family"], r["proto"], r["laddr"], r["lport"], *remote)


def fill_pids(sockets: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """psutil names no owner for a socket of a PID it did not list (a hidden one): take
    the owner from the kernel table's inode, matched by protocol and both endpoints."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        if r.get("pids") and r["family"] != "packet":
            by_key.setdefault(_key(r), []).extend(r["pids"])
    for s in sockets:
        if s.get("pid") is None and s.get("family") in ("inet", "inet6"):
            owners = by_key.get(_key(s))
            if owners:
                s["pid"] = owners[0]
