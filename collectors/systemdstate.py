"""systemd's view of its units, read from disk instead of asked of ``systemctl``.

``systemctl`` is a host binary talking to PID 1 over D-Bus: on a compromised host both
may lie, and in a container or a rescue boot there is no PID 1 to ask. What it would say
is mostly on disk: a unit is *enabled* where a symlink to it sits in a ``*.wants``,
``*.requires`` or ``*.upholds`` directory (or it is aliased), *started in this boot* where
``/run/systemd/units/invocation:<unit>`` exists (its target is the invocation ID), and a
persistent timer's last trigger is the mtime of ``/var/lib/systemd/timers/stamp-<timer>``.
Failed, active and sub-states live only in PID 1's memory and are not claimed here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

UNIT_DIRS = (
    b"etc/systemd/system", b"run/systemd/system", b"run/systemd/transient",
    b"run/systemd/generator", b"run/systemd/generator.early", b"run/systemd/generator.late",
    b"usr/local/lib/systemd/system", b"usr/lib/systemd/system", b"lib/systemd/system",
    b"etc/systemd/user", b"run/systemd/user", b"usr/lib/systemd/user", b"lib/systemd/user",
)  # fmt: skip
HOME_UNIT_DIRS = (b".config/systemd/user", b".local/share/systemd/user")
LINK_DIRS = (".wants", ".requires", ".upholds")
INVOCATIONS = b"run/systemd/units"
TIMER_STAMPS = b"var/lib/systemd/timers"
MAX_ENTRIES = 20_000  # per directory: a unit directory is hundreds, not millions


@dataclass
class UnitState:
    """What the disk says about every unit by name (``read_state``)."""

    enabled_by: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invocations: dict[str, str] | None = None  # None: /run/systemd/units absent (no boot info)
    timer_stamps: dict[str, int] = field(default_factory=dict)  # timer -> last trigger ns

    def fields(self, unit: str) -> dict[str, Any]:
        links = self.enabled_by.get(unit, [])
        started = None if self.invocations is None else unit in self.invocations
        out: dict[str, Any] = {
            "enabled": bool(links),
            "enabled_by": links,
            "started": started,
            "invocation_id": (self.invocations or {}).get(unit),
        }
        if unit in self.timer_stamps:
            out["last_trigger_ns"] = self.timer_stamps[unit]
        return out

    def link_changed_ns(self, unit: str) -> int | None:
        """The newest change of a symlink enabling ``unit``: when it was enabled."""
        times = [link["changed_ns"] for link in self.enabled_by.get(unit, [])]
        return max(times) if times else None


def _names(directory: bytes) -> list[bytes]:
    try:
        with os.scandir(directory) as it:
            return sorted(e.name for _, e in zip(range(MAX_ENTRIES), it, strict=False))
    except OSError:
        return []


def read_state(root: bytes, homes: list[bytes]) -> UnitState:
    state = UnitState()
    dirs = [os.path.join(root, d) for d in UNIT_DIRS]
    dirs += [os.path.join(h, d) for h in homes for d in HOME_UNIT_DIRS]
    for unit_dir in dirs:
        for sub in _names(unit_dir):
            if not sub.decode("utf-8", "replace").endswith(LINK_DIRS):
                continue
            link_dir = os.path.join(unit_dir, sub)
            if os.path.islink(link_dir):
                continue
            for name in _names(link_dir):
                path = os.path.join(link_dir, name)
                try:
                    st = os.lstat(path)
                    target = os.readlink(path) if os.path.islink(path) else None
                except OSError:
                    continue
                state.enabled_by.setdefault(os.fsdecode(name), []).append(
                    {
                        "link": os.fsdecode(path[len(root.rstrip(b"/")) :] or path),
                        "target": os.fsdecode(target) if target is not None else None,
                        "changed_ns": max(st.st_mtime_ns, st.st_ctime_ns),
                    }
                )
    runs = os.path.join(root, INVOCATIONS)
    if os.path.isdir(runs):
        state.invocations = {}
        for name in _names(runs):
            if name.startswith(b"invocation:"):
                try:
                    state.invocations[os.fsdecode(name[11:])] = os.fsdecode(
                        os.readlink(os.path.join(runs, name))
                    )
                except OSError:
                    state.invocations[os.fsdecode(name[11:])] = ""
    stamps = os.path.join(root, TIMER_STAMPS)
    for name in _names(stamps):
        if name.startswith(b"stamp-"):
            try:
                st = os.lstat(os.path.join(stamps, name))
            except OSError:
                continue
            state.timer_stamps[os.fsdecode(name[6:])] = st.st_mtime_ns
    return state


def unit_name(path: bytes) -> str | None:
    """The unit a file in a unit directory defines (a drop-in: the unit it extends)."""
    parent = os.path.basename(os.path.dirname(path)).decode("utf-8", "replace")
    if parent.endswith(".d") and path.endswith(b".conf"):
        return parent[:-2]
    name = os.path.basename(path).decode("utf-8", "replace")
    return name if "." in name else None
