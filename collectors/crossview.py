"""Cross-view process enumeration: the same question asked of the kernel several ways.

An ``LD_PRELOAD`` rootkit filters libc's ``readdir`` of ``/proc``; a bind mount over
``/proc/PID`` hides what the directory holds. Neither can make every view agree, so the
snapshot enumerates PIDs through all of these and reads the union:

- ``readdir``: ``os.listdir("/proc")``, through libc (what ``ps`` and psutil see);
- ``getdents``: a raw ``getdents64`` of ``/proc`` (collectors/rawsys.py);
- ``probe``: the kernel's answer to ``kill(pid, 0)`` for every PID up to ``pid_max``, in
  one native loop; thread IDs answer too and are folded into their thread group;
- ``tasks``: parents and children named by known processes (``PPid``, ``task/*/children``);
- ``fd_refs``: processes other processes hold open (pidfds, ``/proc/N`` descriptors).

``readdir``, ``getdents`` and ``probe`` are complete views: a live PID missing from one of
them, still missing when asked again, is *hidden* from it. ``tasks`` and ``fd_refs`` only
discover. The fd scan also maps socket inodes to their owners (collectors/kernsockets.py).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from . import rawsys

PROC = "/proc"
COMPLETE_VIEWS = ("readdir", "getdents", "probe")
_SOCKET = re.compile(rb"^socket:\[(\d+)\]$")
_PROC_REF = re.compile(rb"^/proc/(\d+)(?:/|$)")
DEFAULT_PID_MAX = 4194304


@dataclass
class Survey:
    views: dict[str, set[int]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # view -> why it failed
    hidden: dict[int, list[str]] = field(default_factory=dict)  # pid -> views missing it
    threads: dict[int, int] = field(default_factory=dict)  # tid -> tgid (not leaders)
    socket_owners: dict[int, list[int]] = field(default_factory=dict)  # inode -> pids
    fd_denied: list[int] = field(default_factory=list)  # pids whose fds could not be read
    pid_max: int = 0
    duration_ns: dict[str, int] = field(default_factory=dict)

    def pids(self) -> list[int]:
        return sorted(set().union(*self.views.values())) if self.views else []

    def to_json(self) -> dict[str, Any]:
        return {
            "views": {k: len(v) for k, v in sorted(self.views.items())},
            "unreadable": self.unreadable,
            "hidden": {str(p): v for p, v in sorted(self.hidden.items())},
            "pid_max": self.pid_max,
            "kernel_direct": rawsys.KERNEL_DIRECT,
            "fd_denied": self.fd_denied[:200],
            "duration_ns": {k: str(v) for k, v in self.duration_ns.items()},
        }


def _digits(names: list[str] | list[bytes]) -> set[int]:
    return {int(n) for n in names if n.isdigit()}


def pid_max() -> int:
    try:
        with open(f"{PROC}/sys/kernel/pid_max", "rb") as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return DEFAULT_PID_MAX


def readdir_view() -> set[int]:
    return _digits(os.listdir(PROC))


def getdents_view() -> set[int]:
    return _digits(rawsys.getdents(PROC))


def _alive(pid: int) -> bool:
    return rawsys.syscall("kill", pid, 0) != -rawsys.ESRCH


def _tgid(pid: int) -> int | None:
    try:
        with open(f"{PROC}/{pid}/status", "rb") as f:
            for line in f.read(8192).splitlines():
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _timed(survey: Survey, name: str, fn: Any, *args: Any) -> Any:
    began = time.monotonic_ns()
    try:
        return fn(*args)
    except (OSError, KeyError, ValueError) as e:
        survey.unreadable[name] = getattr(e, "strerror", None) or f"{type(e).__name__}: {e}"
        return None
    finally:
        survey.duration_ns[name] = time.monotonic_ns() - began


def _tasks(pids: set[int], survey: Survey) -> set[int]:
    """Thread IDs of known processes (so the probe's TIDs are explained) and the parents
    and children they name."""
    named: set[int] = set()
    for pid in pids:
        try:
            tids = _digits(os.listdir(f"{PROC}/{pid}/task"))
        except OSError:
            continue
        for tid in tids:
            if tid != pid:
                survey.threads[tid] = pid
            try:
                with open(f"{PROC}/{pid}/task/{tid}/children", "rb") as f:
                    named |= _digits(f.read(1 << 20).split())
            except OSError:
                pass
        try:
            with open(f"{PROC}/{pid}/stat", "rb") as f:
                data = f.read(4096)
            named.add(int(data[data.rfind(b")") + 2 :].split()[1]))
        except (OSError, ValueError, IndexError):
            pass
    named.discard(0)
    return named


def _fd_scan(pids: set[int], survey: Survey) -> set[int]:
    """Socket inode -> owners, and the PIDs that open descriptors point at."""
    refs: set[int] = set()
    for pid in pids:
        base = f"{PROC}/{pid}/fd"
        try:
            fds = os.listdir(base)
        except PermissionError:
            survey.fd_denied.append(pid)
            continue
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{base}/{fd}".encode())
            except OSError:
                continue
            m = _SOCKET.match(target)
            if m:
                survey.socket_owners.setdefault(int(m.group(1)), []).append(pid)
            elif target == b"anon_inode:[pidfd]":
                refs |= _pidfd_target(pid, fd)
            else:
                m = _PROC_REF.match(target)
                if m:
                    refs.add(int(m.group(1)))
    return refs


def _pidfd_target(pid: int, fd: str) -> set[int]:
    try:
        with open(f"{PROC}/{pid}/fdinfo/{fd}", "rb") as f:
            for line in f.read(4096).splitlines():
                if line.startswith(b"Pid:"):
                    return {int(line.split()[1])} - {0, -1}
    except (OSError, ValueError, IndexError):
        pass
    return set()


def survey() -> Survey:
    """Every view, then the union's disagreements confirmed by asking each view again."""
    s = Survey(pid_max=pid_max())
    for name, reader, args in (
        ("readdir", readdir_view, ()),
        ("getdents", getdents_view, ()),
        ("probe", lambda: set(rawsys.probe_pids(1, s.pid_max)), ()),
    ):
        found = _timed(s, name, reader, *args)
        if found is not None:
            s.views[name] = found
    listed = s.views.get("readdir", set()) | s.views.get("getdents", set())
    s.views["tasks"] = _timed(s, "tasks", _tasks, listed, s) or set()
    probed = s.views.get("probe")
    if probed is not None:  # fold thread IDs into their thread group
        leaders = set()
        for tid in probed:
            if tid in listed:
                leaders.add(tid)
            elif tid in s.threads:
                leaders.add(s.threads[tid])
            else:
                tgid = _tgid(tid)
                leaders.add(tid if tgid is None else tgid)
                if tgid is not None and tgid != tid:
                    s.threads[tid] = tgid
        s.views["probe"] = leaders
    known = set().union(*s.views.values())
    s.views["fd_refs"] = _timed(s, "fd_refs", _fd_scan, known, s) or set()
    extra = s.views["fd_refs"] - known
    if extra:  # pids found only through a descriptor: their own fds too
        _fd_scan(extra, s)
    _confirm(s)
    return s


def _confirm(s: Survey) -> None:
    """A PID missing from a complete view is hidden only if it is still alive and still
    missing when the view is asked again (not a process that started or exited between
    two views)."""
    union = set().union(*s.views.values())
    again: dict[str, set[int]] = {}
    for view in COMPLETE_VIEWS:
        if view not in s.views:
            continue
        for pid in sorted(union - s.views[view]):
            if pid in s.threads or not _alive(pid):
                continue
            if view == "probe":
                missing = not _alive(pid)
            else:
                if view not in again:
                    again[view] = (readdir_view if view == "readdir" else getdents_view)()
                missing = pid not in again[view]
            if missing:
                s.hidden.setdefault(pid, []).append(view)


def proc_overlays(mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mounts on or under ``<a proc mount>/<digits>``: each hides what a process's
    directory holds from every reader of that proc mount."""
    procs = [m["mountpoint"].rstrip("/") for m in mounts if m.get("fstype") == "proc"]
    found = []
    for m in mounts:
        point = str(m.get("mountpoint", ""))
        for root in procs:
            rest = point[len(root) + 1 :] if point.startswith(root + "/") else ""
            head = rest.split("/", 1)[0]
            if head.isdigit():
                found.append({**m, "pid": int(head)})
                break
    return found
