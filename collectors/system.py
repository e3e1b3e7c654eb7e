"""``system``: who the host is, how far its clock can be trusted, who is logged in, what
the kernel loaded, what is mounted, and the files that say who may log in and what runs
on a schedule.

``artifacts/volatile/system.json`` and ``system.txt`` hold what was read from the
kernel, and ``/run/utmp`` is preserved byte-exact under ``artifacts/system/run/utmp``.
Configuration and account files (all of ``/etc``, secrets by hash only) are the
``persistence`` collector's, shell histories the ``accounts`` collector's.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from typing import Any, ClassVar

import psutil

from manifests.clock import utc_from_ns

from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .hostinfo import machine_id
from .textview import json_bytes, printable

if LINUX:
    from . import _linux

OUT = "artifacts/volatile"
PREFIX = "system"
# Account, sudo, cron, systemd and start-up files are the ``persistence`` collector's
# (all of /etc), histories the ``accounts`` collector's; this one keeps what is volatile.
SYSTEM_FILES = (b"/run/utmp",)
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/run/systemd/transient",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
MAX_UNIT_FILE = 256 * 1024


def os_release() -> dict[str, str]:
    try:
        return platform.freedesktop_os_release()
    except OSError:
        return {}


def clocks() -> dict[str, Any]:
    """Clock readings taken together, so the journal can say how far the host's wall
    clock may be trusted (NTP state, time zone, monotonic and boot-time clocks)."""
    wall = time.time_ns()
    result: dict[str, Any] = {
        "utc": utc_from_ns(wall),
        "wall_ns": str(wall),
        "monotonic_ns": str(time.monotonic_ns()),
        "timezone_names": list(time.tzname),
        "utc_offset_s": -time.timezone if not time.localtime().tm_isdst else -time.altzone,
        "TZ": None,  # the tool's own environment is not the host's; see /etc/localtime
    }
    if hasattr(time, "CLOCK_BOOTTIME"):
        result["boottime_ns"] = str(time.clock_gettime_ns(time.CLOCK_BOOTTIME))
    try:
        result["localtime_link"] = os.readlink("/etc/localtime")
    except OSError:
        result["localtime_link"] = None
    if LINUX:
        try:
            result["ntp"] = _linux.ntp_state()
        except OSError as e:
            result["ntp"] = {"error": e.strerror}
    return result


def _exec_lines(path: str) -> list[str]:
    text = _linux.read_regular(path, MAX_UNIT_FILE).decode("utf-8", "backslashreplace")
    keep = ("Exec", "OnCalendar", "OnBoot", "OnUnitActive", "OnActive", "OnStartup", "Unit=")
    return [line.strip() for line in text.splitlines() if line.strip().startswith(keep)]


def scheduled_units() -> list[dict[str, Any]]:
    """Every systemd service and timer with the commands it starts: the persistence a
    responder checks first. Package-provided units are listed too, marked as such."""
    rows = []
    seen: set[str] = set()
    for directory in UNIT_DIRS:
        real = os.path.realpath(directory)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        for name in sorted(os.listdir(real)):
            if not name.endswith((".service", ".timer")):
                continue
            path = os.path.join(directory, name)
            try:
                lines = _exec_lines(path) if os.path.isfile(path) else []
                target = os.readlink(path) if os.path.islink(path) else None
            except OSError as e:
                lines, target = [f"unreadable: {e.strerror}"], None
            rows.append(
                {
                    "unit": name,
                    "path": path,
                    "link_target": target,
                    "package_provided": directory.endswith("lib/systemd/system"),
                    "lines": lines,
                }
            )
    return rows


class SystemCollector(Collector):
    name: ClassVar[str] = "system"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 30
    default: ClassVar[bool] = True
    description: ClassVar[str] = (
        "host identity, clocks, logins, kernel modules, mounts, accounts, cron"
    )

    def collect(self, ctx: CollectContext) -> None:
        data = self._facts(ctx)
        ctx.engine.store_bytes(f"{OUT}/system.json", json_bytes(data), self.name, kind="system")
        ctx.engine.store_bytes(
            f"{OUT}/system.txt", self._text(data).encode(), self.name, kind="system-view"
        )
        c = data["clocks"]
        ctx.journal.append(
            "event",
            event="host-clock",
            collector=self.name,
            utc=c["utc"],
            monotonic_ns=c["monotonic_ns"],
            boottime_ns=c.get("boottime_ns"),
            localtime_link=c.get("localtime_link"),
            ntp_synchronised=(c.get("ntp") or {}).get("synchronised"),
            ntp_max_error_us=(c.get("ntp") or {}).get("max_error_us"),
        )
        for path in SYSTEM_FILES:
            self._preserve(ctx, path)

    def _preserve(self, ctx: CollectContext, path: bytes) -> None:
        """Absent files are not failures (most hosts have no ``.zsh_history``); a file
        that exists but cannot be read is, and is recorded by the copy engine."""
        try:
            os.lstat(path)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            return
        except PermissionError:
            ctx.error(self.name, "cannot stat: Permission denied", path)
            return
        ctx.preserve_tree(path, PREFIX, self.name)

    def _facts(self, ctx: CollectContext) -> dict[str, Any]:
        uname = platform.uname()
        boot = psutil.boot_time()
        data: dict[str, Any] = {
            "hostname": socket.gethostname(),
            "machine_id": machine_id(),
            "os_release": os_release(),
            "kernel": {"system": uname.system, "release": uname.release, "version": uname.version},
            "architecture": uname.machine,
            "boot_time": utc_from_ns(int(boot * 1e9)),
            "uptime_s": int(time.time() - boot),
            "clocks": clocks(),
            "users": [
                {
                    "name": u.name,
                    "terminal": u.terminal,
                    "host": u.host,
                    "started": utc_from_ns(int(u.started * 1e9)),
                    "pid": getattr(u, "pid", None),
                }
                for u in psutil.users()
            ],
            "mounts": [p._asdict() for p in psutil.disk_partitions(all=True)],
        }
        if LINUX:
            for key, reader, source in (
                ("utmp", self._utmp, "/run/utmp"),
                ("kernel_modules", _linux.kernel_modules, "/proc/modules"),
                ("kernel_taint", _linux.kernel_taint, "/proc/sys/kernel/tainted"),
                ("mountinfo", _linux.mountinfo, "/proc/self/mountinfo"),
                ("partitions", _linux.partitions, "/proc/partitions"),
                ("scheduled_units", scheduled_units, "/etc/systemd/system"),
            ):
                try:
                    data[key] = reader()
                except FileNotFoundError:
                    data[key] = None
                    ctx.engine.record_skip(self.name, source.encode(), "not present on this host")
                except OSError as e:
                    data[key] = None
                    ctx.error(self.name, f"cannot read: {e.strerror}", source.encode())
        else:
            ctx.engine.record_skip(
                self.name,
                b"/proc",
                f"utmp, kernel modules, mountinfo and partitions are read on Linux only "
                f"(this is {sys.platform})",
            )
        return data

    @staticmethod
    def _utmp() -> list[dict[str, Any]] | None:
        for path in _linux.UTMP_PATHS:
            if os.path.exists(path):
                return _linux.parse_utmp(_linux.read_regular(path, 64 * 1024 * 1024))
        raise FileNotFoundError(_linux.UTMP_PATHS[0])

    @staticmethod
    def _text(d: dict[str, Any]) -> str:
        c = d["clocks"]
        ntp = c.get("ntp") or {}
        rel = d["os_release"].get("PRETTY_NAME", "?")
        up = d["uptime_s"]
        lines = [
            f"host        {d['hostname']}  (machine id {d['machine_id']})",
            f"os          {rel}; kernel {d['kernel']['release']} {d['architecture']}",
            f"booted      {d['boot_time']}  (up {up // 3600} h {up % 3600 // 60} min)",
            f"clock       {c['utc']}  tz {c.get('localtime_link')}  ntp synchronised: "
            f"{ntp.get('synchronised')} (max error {ntp.get('max_error_us')} us)",
        ]
        taint = d.get("kernel_taint") or {}
        lines.append(
            f"kernel      taint {taint.get('value')}: "
            + (", ".join(f["letter"] for f in taint.get("flags", [])) or "none")
            + (
                f"; {len(d['kernel_modules'])} modules loaded"
                if d.get("kernel_modules") is not None
                else "; no /proc/modules (kernel without loadable modules)"
            )
        )
        for m in d.get("kernel_modules") or []:
            if m["taint"]:
                lines.append(f"  module {m['name']} taint ({m['taint']})")
        lines.append(f"logged in   {len(d['users'])} sessions")
        for u in d["users"]:
            lines.append(
                f"  {u['name']:<12} {u['terminal'] or '-':<8} {u['host'] or '-':<20} {u['started']}"
            )
        return "\n".join(printable(line) for line in lines) + "\n"
