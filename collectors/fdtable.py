"""A process's descriptors and memory maps, read from ``/proc/PID/fd``, ``fdinfo`` and
``maps``: what psutil's ``open_files`` leaves out (sockets, pipes, anonymous inodes,
memfds, deleted files, descriptor flags).

Readers raise ``OSError`` only when the whole table cannot be read (the process is gone,
access denied); a single descriptor closed between the listing and its ``readlink`` is
left out, as the kernel no longer has it. Every read is bounded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from . import readfile
from .redflags import DELETED_SUFFIX, MEMORY_PREFIXES, PACKAGE_PREFIXES, WRITABLE_PREFIXES

PROC = "/proc"
MAX_FDS = 65536  # per process; past this the table is cut and says so
MAX_MAPS_BYTES = 64 * 1024 * 1024
MAX_FDINFO_EXTRA = 16  # fdinfo lines kept beyond pos/flags/mnt_id/ino (epoll has one a target)
_FDINFO_MAX = 64 * 1024
_ACCESS = {0: "r", 1: "w", 2: "rw"}
_FLAG_NAMES = {0o2000: "append", 0o4000: "nonblock", 0o2000000: "cloexec", 0o40000: "direct"}
# Shared anonymous memory shows as a deleted /dev/zero; System V segments as /SYSVkey.
_SHARED_ANON = ("/dev/zero", "/SYSV")
_NS = re.compile(r"^[a-z_]+:\[\d+\]$")  # net:[4026531840], mnt:[...]: namespace descriptors


def kind_of(target: str) -> str:
    """What a ``/proc/PID/fd/N`` link names: file, deleted, memfd, socket, pipe,
    anon_inode, device, namespace or other."""
    if target.startswith("socket:["):
        return "socket"
    if target.startswith("pipe:["):
        return "pipe"
    if target.startswith("anon_inode:"):
        return "anon_inode"
    if target.startswith(MEMORY_PREFIXES):
        return "memfd"
    if target.startswith("/"):
        if target.endswith(DELETED_SUFFIX.decode()):
            return "deleted"
        return "device" if target.startswith("/dev/") else "file"
    return "namespace" if _NS.match(target) else "other"


def parse_fdinfo(text: str) -> dict[str, Any]:
    """``pos``, ``flags`` (octal as the kernel prints it, plus the access mode and named
    bits), ``mnt_id``, ``ino`` and up to ``MAX_FDINFO_EXTRA`` other lines (``prog_id``,
    ``eventfd-count``, ``tfd``...) as text."""
    info: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for line in text.split("\n"):  # as in parse_maps: a name may hold other separators
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in ("pos", "mnt_id", "ino") and value.isdigit():
            info[key] = int(value) if key != "pos" else str(int(value))
        elif key == "flags" and re.fullmatch(r"[0-7]+", value):
            bits = int(value, 8)
            info["flags"] = value
            info["access"] = _ACCESS.get(bits & 3, "?")
            named = [name for bit, name in _FLAG_NAMES.items() if bits & bit]
            if named:
                info["flag_names"] = named
        elif len(extra) < MAX_FDINFO_EXTRA and key not in extra:
            extra[key] = value[:200]
    if extra:
        info["extra"] = extra
    return info


def _readlink(path: str) -> str:
    return os.readlink(path.encode()).decode("utf-8", "backslashreplace")


def read_fds(pid: int) -> tuple[list[dict[str, Any]], bool]:
    """Every descriptor of ``pid``: ``{"fd", "target", "kind", ...fdinfo}``, sorted by
    number, and whether the table was cut at ``MAX_FDS``. Raises OSError when the
    descriptor directory itself cannot be listed."""
    base = f"{PROC}/{pid}"
    names = os.listdir(f"{base}/fd")
    numbers = sorted(int(n) for n in names if n.isdigit())
    cut = len(numbers) > MAX_FDS
    table: list[dict[str, Any]] = []
    for n in numbers[:MAX_FDS]:
        try:
            target = _readlink(f"{base}/fd/{n}")
        except OSError:
            continue  # closed since the listing
        entry: dict[str, Any] = {"fd": n, "target": target, "kind": kind_of(target)}
        try:
            raw = readfile.read_regular(f"{base}/fdinfo/{n}", _FDINFO_MAX)
            entry.update(parse_fdinfo(raw.decode("utf-8", "backslashreplace")))
        except OSError as e:
            entry["fdinfo_error"] = e.strerror or str(e)
        table.append(entry)
    return table, cut


@dataclass(frozen=True)
class Mapping:
    """One line of ``/proc/PID/maps``."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str  # "" for anonymous memory; [heap], [stack], [vvar]... as the kernel names them
    line: str

    @property
    def deleted(self) -> bool:
        return self.path.endswith(DELETED_SUFFIX.decode())

    @property
    def anonymous(self) -> bool:
        return self.inode == 0 or self.path.startswith(MEMORY_PREFIXES)


def read_maps(pid: int) -> list[Mapping]:
    """The process's mappings, in address order. Raises OSError (gone, denied)."""
    raw = readfile.read_regular(f"{PROC}/{pid}/maps", MAX_MAPS_BYTES)
    return parse_maps(raw.decode("utf-8", "backslashreplace"))


def parse_maps(text: str) -> list[Mapping]:
    """One ``Mapping`` a line. Lines end at ``\n`` only: the kernel escapes that one in a
    file name, not U+0085, U+2028 or ``\x0b``, at which ``splitlines`` would cut a line
    (a deleted library's path losing its `` (deleted)``, or a forged second mapping)."""
    out = []
    for line in text.split("\n"):
        parts = line.split(None, 5)
        if len(parts) < 5 or "-" not in parts[0]:
            continue
        lo, _, hi = parts[0].partition("-")
        try:
            out.append(
                Mapping(
                    int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), int(parts[4]),
                    parts[5].strip() if len(parts) == 6 else "", line,
                )
            )  # fmt: skip
        except ValueError:
            continue
    return out


def injected(maps: list[Mapping], exe: str | None) -> list[str]:
    """Executable mappings of code that a package never put there: a library mapped from
    a world-writable directory, deleted from disk outside the package paths, or living in
    a memfd. The process's own executable is judged by its own red flags, not here."""
    found: list[str] = []
    for m in maps:
        if "x" not in m.perms or not m.path or m.path.startswith("["):
            continue
        path = m.path[: -len(DELETED_SUFFIX)] if m.deleted else m.path
        if (exe and path == exe) or path.startswith(_SHARED_ANON):
            continue
        # A deleted library under the package paths is one an upgrade replaced.
        gone = m.deleted and not path.startswith(PACKAGE_PREFIXES)
        odd = m.path.startswith(MEMORY_PREFIXES) or gone or path.startswith(WRITABLE_PREFIXES)
        if odd and m.path not in found:
            found.append(m.path)
    return found
