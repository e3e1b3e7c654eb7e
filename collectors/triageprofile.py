"""The ``[triage]`` table of a profile: how deep the triage collectors go, as data.

Checked with the rest of the profile when it is loaded (collectors/logprofile.py), so a
typo is a usage error naming the key. Each key and its default is documented in
docs/triage.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manifests.errors import UsageError

_SIZES = {"staging_max_file_bytes": 16 * 1024**2, "staging_max_total_bytes": 64 * 1024**2}
_KEYS = {"timeline", "packages", "executables", "detection_window_days", "journald_all", *_SIZES}
_SWITCHES = ("timeline", "packages", "executables", "journald_all")


@dataclass(frozen=True)
class TriageSettings:
    timeline: bool = False  # the whole-host bodyfile (collectors/timeline.py)
    packages: bool = False  # package files against the dpkg database (collectors/packages.py)
    executables: bool = False  # hashes, SUID/SGID/capabilities (collectors/executables.py)
    # The parsed journal (collectors/journald.py, in every profile): every entry, or only
    # those of the detection window (the default).
    journald_all: bool = False
    # What the staging collector copies of world-writable directories and web roots
    # (collectors/staging.py): at most this much of one file, and of all of them.
    staging_max_file_bytes: int = _SIZES["staging_max_file_bytes"]
    staging_max_total_bytes: int = _SIZES["staging_max_total_bytes"]
    # A persistence entry changed within this many days before collection is a finding.
    detection_window_days: int = 30


def parse_triage(where: str, table: Any) -> TriageSettings:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: [triage] must be a table")
    extra = sorted(set(table) - _KEYS)
    if extra:
        raise UsageError(
            f"{where}, [triage]: unknown key {extra[0]!r} (known: {', '.join(sorted(_KEYS))})"
        )
    switches = {key: table.get(key, False) for key in _SWITCHES}
    for key, value in switches.items():
        if not isinstance(value, bool):
            raise UsageError(f"{where}, [triage]: {key!r} must be true or false")
    days = table.get("detection_window_days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise UsageError(
            f"{where}, [triage]: 'detection_window_days' must be a whole number of days, 1 or more"
        )
    sizes = {key: table.get(key, default) for key, default in _SIZES.items()}
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(
                f"{where}, [triage]: {key!r} must be a whole number of bytes, 0 or more"
            )
    return TriageSettings(**switches, detection_window_days=days, **sizes)


def runs(settings: TriageSettings, name: str, only: tuple[str, ...]) -> bool:
    """Does the triage collector ``name`` run: its profile switch is on, or it was named
    with ``--only``. A default (``standard``) run stays as fast as before: these
    collectors cost a minute or more on a real server (docs/triage.md)."""
    return name in only or bool(getattr(settings, name))
