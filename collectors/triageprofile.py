"""The ``[triage]`` table of a profile: how deep the triage collectors go, as data.

Checked with the rest of the profile when it is loaded (collectors/logprofile.py), so a
typo is a usage error naming the key. Each key and its default is documented in
docs/triage.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manifests.errors import UsageError

_SWITCHES = (
    "timeline", "packages", "executables", "persistence", "accounts", "journald_all",
    "fileflags", "inode_flags_wide", "auditrules", "pacct", "pacct_all", "locate", "locate_names",
)  # fmt: skip
# Cheap: seconds (persistence, accounts) or milliseconds (the rest), so in every profile
# by default.
DEFAULT_ON = {"persistence", "accounts", "fileflags", "auditrules", "pacct", "locate"}
_BYTE_SIZES = {"staging_max_file_bytes": 16 * 1024**2, "staging_max_total_bytes": 64 * 1024**2}
_MIB_SIZES = ("config_max_file_mib", "config_max_total_mib")
_KEYS = {*_SWITCHES, *_BYTE_SIZES, *_MIB_SIZES, "detection_window_days"}


@dataclass(frozen=True)
class TriageSettings:
    timeline: bool = False  # the whole-host bodyfile (collectors/timeline.py)
    packages: bool = False  # package files against the dpkg database (collectors/packages.py)
    executables: bool = False  # hashes, SUID/SGID/capabilities (collectors/executables.py)
    persistence: bool = True  # /etc, start-up files, SSH, cron, units (collectors/persistence.py)
    accounts: bool = True  # histories, lastlog, faillog, accounts (collectors/accounts.py)
    # The parsed journal (collectors/journald.py, in every profile): every entry, or only
    # those of the detection window (the default).
    journald_all: bool = False
    # Inode flags (collectors/fileflags.py) of /etc, persistence, bin and home start-up
    # files; with inode_flags_wide also /usr/lib, /usr/local, /opt, /srv, /var/www, homes.
    fileflags: bool = True
    inode_flags_wide: bool = False
    auditrules: bool = True  # the kernel's loaded audit rules (collectors/auditrules.py)
    # Process accounting (collectors/pacct.py): copied, and its newest records parsed
    # (pacct_all: every record).
    pacct: bool = True
    pacct_all: bool = False
    # locate databases (collectors/locate.py): copied; with locate_names their file names
    # are also listed as text.
    locate: bool = True
    locate_names: bool = False
    # What the staging collector copies of world-writable directories and web roots
    # (collectors/staging.py): at most this much of one file, and of all of them.
    staging_max_file_bytes: int = _BYTE_SIZES["staging_max_file_bytes"]
    staging_max_total_bytes: int = _BYTE_SIZES["staging_max_total_bytes"]
    # A persistence entry changed within this many days before collection is a finding.
    detection_window_days: int = 30
    # Configuration, start-up and history files: larger ones are recorded, not copied;
    # past the total, the rest are recorded, not copied.
    config_max_file_mib: int = 16
    config_max_total_mib: int = 1024


def parse_triage(where: str, table: Any) -> TriageSettings:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: [triage] must be a table")
    extra = sorted(set(table) - _KEYS)
    if extra:
        raise UsageError(
            f"{where}, [triage]: unknown key {extra[0]!r} (known: {', '.join(sorted(_KEYS))})"
        )
    switches = {key: table.get(key, key in DEFAULT_ON) for key in _SWITCHES}
    for key, value in switches.items():
        if not isinstance(value, bool):
            raise UsageError(f"{where}, [triage]: {key!r} must be true or false")
    days = table.get("detection_window_days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise UsageError(
            f"{where}, [triage]: 'detection_window_days' must be a whole number of days, 1 or more"
        )
    byte_sizes = {key: table.get(key, default) for key, default in _BYTE_SIZES.items()}
    for key, value in byte_sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(
                f"{where}, [triage]: {key!r} must be a whole number of bytes, 0 or more"
            )
    mib_sizes = {key: table.get(key, getattr(TriageSettings, key)) for key in _MIB_SIZES}
    for key, value in mib_sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{where}, [triage]: {key!r} must be a whole number of MiB, 1 or more")
    return TriageSettings(**switches, **byte_sizes, **mib_sizes, detection_window_days=days)


def runs(settings: TriageSettings, name: str, only: tuple[str, ...]) -> bool:
    """Does the triage collector ``name`` run: its profile switch is on, or it was named
    with ``--only``. ``timeline``, ``packages`` and ``executables`` are off unless a
    profile turns them on (standard and full do; a profile of one's own reads the whole
    host only when it says so); ``persistence`` and ``accounts`` are on unless a profile
    turns them off (seconds: docs/triage.md)."""
    return name in only or bool(getattr(settings, name))
