"""Read processes through a fresh ``proc`` instance, where no overmount can reach.

A bind mount over ``/proc/PID`` hides that directory from every reader of the host's
``/proc``. A new ``proc`` mounted elsewhere is another instance with no mounts on it, so
it shows the process as the kernel has it. The mount is made in a private mount namespace
of a short-lived child (``python -m collectors.freshproc PID...``; in the kit through the
kit's launcher, collectors/selfexec.py), on top of that
namespace's ``/proc``, never in the collector's own process: the host's mount table is
not touched, no mount point is created on its disks, and the namespace dies with the
child. Needs root (CAP_SYS_ADMIN); the child prints one JSON object.

For reading a process's memory, the child can instead open files of the fresh instance
(``/proc/PID/maps``, ``/proc/PID/mem``) and pass the open descriptors back over a UNIX
socket (``open_files``): they stay valid after the child and its namespace are gone.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import socket
import subprocess
import sys
from typing import Any

from .selfexec import module_command

_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18
_CLONE_NEWNS = 0x00020000  # os.unshare is Python 3.12
_TIMEOUT = 60


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.mount(source, target, fstype, ctypes.c_ulong(flags), None), os.fsdecode(target))


def _read(path: str, limit: int = 1 << 20) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read(limit)


def _one(root: str, pid: int) -> dict[str, Any]:
    base = f"{root}/{pid}"
    rec: dict[str, Any] = {"pid": pid}
    try:
        rec["status"] = _status(_read(f"{base}/status"))
    except OSError as e:
        return {"pid": pid, "error": e.strerror or str(e)}
    for name, reader in (
        ("cmdline_b64", lambda: base64.b64encode(_read(f"{base}/cmdline")).decode()),
        ("exe", lambda: os.readlink(f"{base}/exe".encode()).decode("utf-8", "backslashreplace")),
        ("exe_sha256", lambda: hashlib.sha256(_read(f"{base}/exe", 1 << 30)).hexdigest()),
        ("cwd", lambda: os.readlink(f"{base}/cwd".encode()).decode("utf-8", "backslashreplace")),
        ("fds", lambda: _fds(base)),
    ):
        try:
            rec[name] = reader()
        except OSError as e:
            rec.setdefault("errors", {})[name] = e.strerror or str(e)
    return rec


def _status(raw: bytes) -> dict[str, str]:
    """``/proc/PID/status`` as {field: value}. Lines end at ``\\n`` only and values lose
    only spaces and tabs: a process names itself (``comm``, up to 15 bytes the kernel
    prints as they are but for control characters), and one called ``x<U+2028>PPid:`` or
    ``x<NEL>...`` would otherwise forge a field or hide the rest of its name, where
    ``str.splitlines`` and ``str.strip`` also cut."""
    fields = {}
    for line in raw.split(b"\n"):
        if line:
            key, _, value = line.decode("utf-8", "backslashreplace").partition(":")
            fields[key.strip(" \t")] = value.strip(" \t")
    return fields


def _fds(base: str) -> dict[str, str]:
    out = {}
    for fd in os.listdir(f"{base}/fd"):
        try:
            out[fd] = os.readlink(f"{base}/fd/{fd}".encode()).decode("utf-8", "backslashreplace")
        except OSError:
            continue
    return out


def child(pids: list[int]) -> dict[str, Any]:
    _check(ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWNS), "unshare")
    _mount(None, b"/", None, _MS_REC | _MS_PRIVATE)  # nothing of ours propagates back
    # On top of /proc itself: the new instance covers the old one and every mount on it,
    # and nothing is created on the host's disks for a mount point.
    _mount(b"proc", b"/proc", b"proc", 0)
    return {"mounted_at": "/proc", "processes": [_one("/proc", pid) for pid in pids]}


def _send_opened(sock_fd: int, pid: int, names: list[str]) -> None:
    """Child side of ``open_files``: open each name under the fresh /proc/PID, send them."""
    _check(ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWNS), "unshare")
    _mount(None, b"/", None, _MS_REC | _MS_PRIVATE)
    _mount(b"proc", b"/proc", b"proc", 0)
    fds = [os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in names]
    with socket.socket(fileno=sock_fd) as sock:
        socket.send_fds(sock, [b"ok"], fds)


def open_files(pid: int, names: list[str]) -> list[int]:
    """Descriptors of ``/proc/PID/NAME`` for each name, opened in a fresh proc instance
    by a child (no overmount of the host's /proc reaches them). The caller closes them.
    Raises OSError with the child's reason when they cannot be had."""
    if os.geteuid() != 0:
        raise PermissionError("needs root (a proc mount in a private mount namespace)")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        try:
            done = subprocess.run(
                [*module_command("collectors.freshproc"), "--send", str(theirs.fileno()),
                 str(pid), *names],
                capture_output=True, timeout=_TIMEOUT, check=False, pass_fds=[theirs.fileno()],
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            raise OSError(f"cannot run the reader: {e}") from None
        theirs.close()
        ours.settimeout(_TIMEOUT)
        _, fds, _, _ = socket.recv_fds(ours, 16, len(names))
    if len(fds) != len(names):
        for fd in fds:
            os.close(fd)
        tail = done.stderr.decode("utf-8", "backslashreplace").strip().splitlines()[-1:]
        why = json.loads(done.stdout).get("error") if done.stdout.startswith(b"{") else None
        raise OSError(why or f"reader failed (exit {done.returncode}): {' '.join(tail)}")
    return fds


def read(pids: list[int]) -> dict[str, Any]:
    """The processes as a fresh proc shows them, or ``{"error": why}``."""
    if os.geteuid() != 0:
        return {"error": "needs root (a proc mount in a private mount namespace)"}
    try:
        done = subprocess.run(
            [*module_command("collectors.freshproc"), *map(str, pids)],
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"cannot run the reader: {e}"}
    try:
        result: dict[str, Any] = json.loads(done.stdout)
        return result
    except ValueError:
        tail = done.stderr.decode("utf-8", "backslashreplace").strip().splitlines()[-1:]
        return {"error": f"reader failed (exit {done.returncode}): {' '.join(tail)}"}


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["--send"]:
            _send_opened(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
        else:
            print(json.dumps(child([int(a) for a in sys.argv[1:]])))
    except OSError as e:
        print(json.dumps({"error": f"{e.strerror or e} ({e.filename})"}))
