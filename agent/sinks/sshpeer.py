"""The address an ``ssh`` process is actually connected to, read from ``/proc``.

ssh resolves the server's name itself; preserve's own ``getaddrinfo`` answer is only a
guess at what ssh reached (round-robin DNS, several addresses). The address matters
twice: ``--isolate`` keeps it open, and the fsync session (``sidefsync``) must reach the
same server. So once ssh's session is up, its TCP socket is looked up by inode in
``/proc/<pid>/net/tcp`` and ``tcp6``, where the kernel lists each connection's remote
address (hex, each 32-bit word in the host's byte order)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys


def socket_fds(pid: int) -> dict[int, str]:
    """``pid``'s descriptors that are sockets, each with its inode; empty if the
    process is gone or not readable."""
    found = {}
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    found[int(fd)] = link[len("socket:[") : -1]
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 16 and raw.startswith(bytes(10) + b"\xff\xff"):
        return socket.inet_ntop(socket.AF_INET, raw[12:])  # an IPv4-mapped address
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def connected_peer(pid: int, port: int) -> str | None:
    """The remote address of ``pid``'s established TCP connection to ``port``, or None
    (not Linux, the process gone, or no such connection)."""
    inodes = set(socket_fds(pid).values())
    for table in ("tcp", "tcp6"):
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{pid}/net/{table}") as lines,
        ):
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                remote, state, inode = fields[2], fields[3], fields[9]
                address, _, hex_port = remote.partition(":")
                if inode in inodes and state == "01" and int(hex_port, 16) == port:
                    return _address(address)
    return None
