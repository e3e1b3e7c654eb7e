"""The Sleuth Kit's bodyfile (3.x) for ``mactime`` and plaso: one line per preserved
file, with the metadata its *source* had on the host when it was copied.

``MD5|name|inode|mode_as_string|UID|GID|size|atime|mtime|ctime|crtime``

- MD5 column: the SHA-256 of the preserved bytes (preserve does not compute MD5;
  ``mactime`` prints the column as it is). 0 where no hash exists.
- name: the host path; ``|`` is written as ``%7C`` and control characters as ``%XX``,
  so one file is always one line with 11 fields.
- times: whole seconds since the epoch (UTC); crtime is 0 (Linux ``stat`` gives no birth
  time here).
- Files the tool generated (JSON snapshots) have no host metadata and are not listed;
  a deleted executable copied through ``/proc/PID/exe`` is named ``EXE (via /proc/PID/exe)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..report.bounded import mapping, text
from ..report.values import source_name
from .stream import Sink


def _name(path: str) -> str:
    out = []
    for ch in path:
        if ch == "|" or ch == "%" or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"%{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def _seconds(ns: Any) -> int:
    try:
        return int(ns) // 1_000_000_000
    except (TypeError, ValueError):
        return 0


def line(a: dict[str, Any]) -> str | None:
    src = mapping(a.get("source"))
    st = src.get("stat")
    if not isinstance(st, dict) or not isinstance(src.get("path"), str) or not src["path"]:
        return None
    return "|".join(
        x if isinstance(x, str) else text(x)
        for x in (
            a.get("sha256") or 0,
            _name(source_name(a)),
            st.get("ino", 0),
            st.get("mode_text", "----------"),
            st.get("uid", 0),
            st.get("gid", 0),
            st.get("size", a.get("size", 0)),
            _seconds(st.get("atime_ns")),
            _seconds(st.get("mtime_ns")),
            _seconds(st.get("ctime_ns")),
            0,
        )
    )


def write(out: Sink, artifacts: Iterable[dict[str, Any]]) -> None:
    """One line per artifact as its record is read (journal order)."""
    for a in artifacts:
        row = line(a)
        if row:
            out.write(row + "\n")
