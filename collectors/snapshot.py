"""The volatile snapshot: the process table and the socket table, read back to back.

Only reading happens between the two clock readings: no hashing, no writing, so the
window in which the host can change under the snapshot stays as short as possible (the
journal's ``snapshot`` event gives its wall and monotonic start and end). ``processes``
takes the snapshot and leaves it in ``ctx.shared`` for ``network``, so both describe
the same moment; ``network`` run alone takes a socket-only snapshot.

psutil's bulk ``as_dict`` hides why a field is missing; here every field is read on its
own, and a field comes back as None with its name in ``denied`` (AccessDenied) or
``unavailable`` (zombie, or the kernel has no such data), never as an exception. A
process that exits mid-read keeps what was read and is marked ``vanished``.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from manifests.clock import utc_from_ns

from ._common import LINUX
from .context import CollectContext

if LINUX:
    from . import _linux, crossview, kernsockets
SHARED_KEY = "volatile_snapshot"

_FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
if hasattr(socket, "AF_UNIX"):
    _FAMILIES[socket.AF_UNIX] = "unix"
_TYPES = {
    socket.SOCK_STREAM: "stream",
    socket.SOCK_DGRAM: "dgram",
    socket.SOCK_SEQPACKET: "seqpacket",
}


def _utc(seconds: float) -> str:
    return utc_from_ns(int(seconds * 1_000_000_000))


def _cpu(p: psutil.Process) -> dict[str, float]:
    return p.cpu_times()._asdict()


def _memory(p: psutil.Process) -> dict[str, int | None]:
    m = p.memory_info()
    return {"rss": m.rss, "vms": m.vms, "shared": getattr(m, "shared", None)}


def _files(p: psutil.Process) -> list[dict[str, Any]]:
    return [
        {"path": f.path, "fd": f.fd, "mode": getattr(f, "mode", None), "position": f.position}
        for f in p.open_files()
    ]


# Field name -> reader. Order matters only for readability of the JSON.
PSUTIL_FIELDS: list[tuple[str, Callable[[psutil.Process], Any]]] = [
    ("name", lambda p: p.name()),
    ("cmdline", lambda p: p.cmdline()),
    ("cwd", lambda p: p.cwd()),
    ("uids", lambda p: list(p.uids())),
    ("gids", lambda p: list(p.gids())),
    ("status", lambda p: p.status()),
    ("create_time", lambda p: _utc(p.create_time())),
    ("nice", lambda p: p.nice()),
    ("num_threads", lambda p: p.num_threads()),
    ("cpu_times", _cpu),
    ("memory", _memory),
    ("num_fds", lambda p: p.num_fds()),
    ("open_files", _files),
]


@dataclass
class Snapshot:
    processes: list[dict[str, Any]] | None
    sockets: list[dict[str, Any]]
    exe_links: dict[int, bytes | None] = field(default_factory=dict)
    vanished: list[int] = field(default_factory=list)
    timing: dict[str, str] = field(default_factory=dict)
    # Linux: the cross-view survey the PIDs came from, and the kernel's socket tables
    # (inet, raw, packet) with inodes and owners (collectors/crossview.py, kernsockets.py)
    survey: Any = None
    kernel_sockets: list[dict[str, Any]] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


class _Reader:
    """Reads one process at a time; caches what is shared between processes."""

    def __init__(self, collect_env: bool) -> None:
        self.collect_env = collect_env
        self.users: dict[int, str | None] = {}
        self.ttys = _linux.terminal_map() if LINUX else {}
        self.boot_time = psutil.boot_time()

    def username(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        if uid not in self.users:
            try:
                import pwd

                self.users[uid] = pwd.getpwuid(uid).pw_name
            except (KeyError, ImportError):
                self.users[uid] = None
        return self.users[uid]

    def read(self, pid: int, links: dict[int, bytes | None]) -> dict[str, Any] | None:
        rec: dict[str, Any] = {"pid": pid}
        denied: list[str] = []
        unavailable: list[str] = []
        try:
            p = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return None
        except psutil.AccessDenied:
            return {"pid": pid, "denied": ["all"], "unavailable": []}
        readers = list(PSUTIL_FIELDS)
        if self.collect_env:
            readers.append(("environ", lambda q: q.environ()))
        if LINUX:

            def exe(_: psutil.Process) -> bytes | None:
                links[pid] = _linux.exe_link(pid)
                return links[pid]

            def cmdline(q: psutil.Process) -> list[str]:
                # Byte-exact: psutil reads it in text mode, where "\r\n" becomes "\n".
                raw = _linux.cmdline_raw(pid)
                if not raw and q.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.ZombieProcess(pid)
                rec["cmdline_b64"] = base64.b64encode(raw).decode("ascii")
                return _linux.split_cmdline(raw)

            def ids(_: psutil.Process) -> int:
                ppid, tty, start = _linux.stat_ids(pid)
                rec["terminal"] = self.ttys.get(tty)
                rec["create_time"] = _utc(self.boot_time + start / _linux.CLOCK_TICKS)
                return ppid

            readers = [
                ("ppid", ids),
                *((n, cmdline if n == "cmdline" else r) for n, r in readers if n != "create_time"),
                ("exe", exe),
                ("root", lambda q: _linux.root_link(pid)),
            ]
        else:
            readers = [("ppid", lambda q: q.ppid()), *readers]
            readers += [("exe", lambda q: q.exe() or None), ("terminal", lambda q: q.terminal())]
        with p.oneshot():
            for name, reader in readers:
                try:
                    rec[name] = reader(p)
                except psutil.ZombieProcess:
                    rec[name] = None
                    unavailable.append(name)
                except psutil.NoSuchProcess:
                    rec["vanished"] = True
                    break
                except (psutil.AccessDenied, PermissionError):
                    rec[name] = None
                    denied.append(name)
                except FileNotFoundError:
                    if not psutil.pid_exists(pid):
                        rec["vanished"] = True
                        break
                    rec[name] = None
                    unavailable.append(name)
                except (OSError, NotImplementedError, ValueError):
                    rec[name] = None
                    unavailable.append(name)
        if isinstance(rec.get("exe"), bytes):
            rec["exe"] = rec["exe"].decode("utf-8", "backslashreplace")
        uids = rec.get("uids") or [None, None, None]
        rec["username"] = self.username(uids[0])
        rec["effective_user"] = self.username(uids[1])
        rec["denied"] = denied
        rec["unavailable"] = unavailable
        return rec


def _address(addr: Any) -> tuple[str | None, int | None]:
    if not addr:
        return None, None
    if isinstance(addr, str):  # a unix socket's path
        return addr, None
    return addr.ip, addr.port


def read_sockets() -> list[dict[str, Any]]:
    """Every socket psutil can see (inet, inet6, tcp, udp, unix), with its owner's pid."""
    rows = []
    for c in psutil.net_connections(kind="all"):
        laddr, lport = _address(c.laddr)
        raddr, rport = _address(c.raddr)
        family = _FAMILIES.get(c.family, str(int(c.family)))
        kind = _TYPES.get(c.type, str(int(c.type)))
        proto = {"stream": "tcp", "dgram": "udp"}.get(kind, kind) if family != "unix" else "unix"
        rows.append(
            {
                "family": family,
                "proto": proto,
                "type": kind,
                "laddr": laddr,
                "lport": lport,
                "raddr": raddr,
                "rport": rport,
                "status": c.status if c.status != psutil.CONN_NONE else None,
                "pid": c.pid,
                "fd": c.fd if c.fd != -1 else None,
            }
        )
    return rows


def _record_timing(
    ctx: CollectContext,
    snap: Snapshot,
    parts: list[str],
    wall: tuple[int, int],
    mono: tuple[int, int],
) -> None:
    snap.timing = {
        "wall_start": utc_from_ns(wall[0]),
        "wall_end": utc_from_ns(wall[1]),
        "mono_start_ns": str(mono[0]),
        "mono_end_ns": str(mono[1]),
        "duration_ns": str(mono[1] - mono[0]),
    }
    ctx.journal.append(
        "event",
        event="snapshot",
        parts=parts,
        processes=len(snap.processes) if snap.processes is not None else None,
        sockets=len(snap.sockets),
        vanished=len(snap.vanished),
        collect_env=ctx.options.collect_env,
        **snap.timing,
    )


def take(ctx: CollectContext) -> Snapshot:
    """Processes, then sockets, back to back; cached for the rest of the run."""
    wall0, mono0 = time.time_ns(), time.monotonic_ns()
    reader = _Reader(ctx.options.collect_env)
    links: dict[int, bytes | None] = {}
    processes, vanished = [], []
    survey = crossview.survey() if LINUX else None
    for pid in survey.pids() if survey else psutil.pids():
        rec = reader.read(pid, links)
        if rec is None or rec.get("vanished"):
            vanished.append(pid)
        if rec is not None:
            processes.append(rec)
    try:
        sockets = read_sockets()
        socket_error = None
    except (psutil.AccessDenied, OSError) as e:
        sockets, socket_error = [], str(e)
    kernel_sockets: list[dict[str, Any]] = []
    unreadable: dict[str, str] = {}
    if survey is not None:
        kernel_sockets = kernsockets.read_tables(unreadable)
        kernsockets.attach_owners(kernel_sockets, survey)
        kernsockets.fill_pids(sockets, kernel_sockets)
    wall1, mono1 = time.time_ns(), time.monotonic_ns()
    snap = Snapshot(processes, sockets, links, vanished, survey=survey)
    snap.kernel_sockets, snap.unreadable = kernel_sockets, unreadable
    _record_timing(ctx, snap, ["processes", "sockets"], (wall0, wall1), (mono0, mono1))
    if socket_error:
        ctx.error("processes", f"cannot list sockets: {socket_error}")
    ctx.shared[SHARED_KEY] = snap
    return snap


def sockets_only(ctx: CollectContext) -> Snapshot:
    wall0, mono0 = time.time_ns(), time.monotonic_ns()
    sockets = read_sockets()
    wall1, mono1 = time.time_ns(), time.monotonic_ns()
    snap = Snapshot(None, sockets)
    _record_timing(ctx, snap, ["sockets"], (wall0, wall1), (mono0, mono1))
    return snap
