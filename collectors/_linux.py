"""Linux-only volatile sources that psutil does not offer, read from ``/proc`` and ``/run``.

Every reader is bounded (``_read``), returns plain dicts and lists ready for JSON, and
raises ``OSError`` when its source cannot be read, so the caller decides whether that is
a skipped source (absent) or a failure (denied). No host binaries are run here.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import socket
import struct
from typing import Any

from . import readfile, utmp

PROC = "/proc"
_MAX_PROC_FILE = 16 * 1024 * 1024  # a /proc table larger than this is not plausible
_OCTAL = re.compile(rb"\\([0-7]{3})")

# /proc/sys/kernel/tainted bits (Documentation/admin-guide/tainted-kernels.rst)
TAINT_FLAGS = {
    0: ("P", "proprietary module was loaded"),
    1: ("F", "module was force loaded"),
    2: ("S", "kernel running on an out of specification system"),
    3: ("R", "module was force unloaded"),
    4: ("M", "processor reported a Machine Check Exception"),
    5: ("B", "bad page referenced or some unexpected page flags"),
    6: ("U", "taint requested by userspace application"),
    7: ("D", "kernel died recently, i.e. there was an OOPS or BUG"),
    8: ("A", "ACPI table overridden by user"),
    9: ("W", "kernel issued warning"),
    10: ("C", "staging driver was loaded"),
    11: ("I", "workaround for bug in platform firmware applied"),
    12: ("O", "externally-built (out-of-tree) module was loaded"),
    13: ("E", "unsigned module was loaded"),
    14: ("L", "soft lockup occurred"),
    15: ("K", "kernel has been live patched"),
    16: ("X", "auxiliary taint, defined for and used by distros"),
    17: ("T", "kernel was built with the struct randomization plugin"),
    18: ("N", "an in-kernel test has been run"),
    19: ("J", "userspace used a mutating debug operation in fwctl"),
}

# route flags from include/uapi/linux/route.h
_RTF_UP, _RTF_GATEWAY, _RTF_REJECT = 0x1, 0x2, 0x200


def _read(path: str, limit: int = _MAX_PROC_FILE) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read(limit)


read_regular = readfile.read_regular  # re-exported for the collectors that use it


def _text(path: str) -> str:
    return _read(path).decode("utf-8", "backslashreplace")


# -- processes ---------------------------------------------------------------------------


def exe_link(pid: int) -> bytes | None:
    """The raw ``/proc/PID/exe`` link text, with the kernel's `` (deleted)`` suffix kept
    (psutil strips it). None for kernel threads; raises OSError when denied or gone."""
    try:
        return os.readlink(f"{PROC}/{pid}/exe".encode())
    except FileNotFoundError:
        if os.path.exists(f"{PROC}/{pid}"):
            return None  # a kernel thread has no executable
        raise


def cmdline_raw(pid: int) -> bytes:
    """``/proc/PID/cmdline`` exactly as the kernel gives it (argv, NUL-separated)."""
    return _read(f"{PROC}/{pid}/cmdline", 1 << 20)


def split_cmdline(raw: bytes) -> list[str]:
    """argv as psutil shows it (NUL-separated, or space-separated for a process that
    rewrote its title), decoded as file names are, but with every byte kept: no newline
    translation."""
    data = os.fsdecode(raw)
    if not data:
        return []
    sep = "\x00" if data.endswith("\x00") else " "
    if data.endswith(sep):
        data = data[:-1]
    args = data.split(sep)
    if sep == "\x00" and len(args) == 1 and " " in data:
        args = data.split(" ")
    return args


def root_link(pid: int) -> str:
    return os.readlink(f"{PROC}/{pid}/root")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat_ids(pid: int) -> tuple[int, int, int]:
    """Parent pid, controlling terminal's device number and start time (clock ticks
    after boot) from one read of ``/proc/PID/stat``. psutil's ``ppid()`` and
    ``create_time()`` re-read the process (a pid-reuse guard and a fresh boot-time
    read each), which cost a third of the whole snapshot."""
    data = _read(f"{PROC}/{pid}/stat", 4096)
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[1]), int(rest[4]), int(rest[19])


def terminal_map() -> dict[int, str]:
    """Device number -> terminal path, built once per snapshot (psutil rebuilds it for
    every process, which costs more than the rest of the process table)."""
    found: dict[int, str] = {}
    for directory, prefix in (("/dev", "tty"), ("/dev/pts", "")):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if prefix and not name.startswith(prefix):
                continue
            path = f"{directory}/{name}"
            try:
                found[os.stat(path).st_rdev] = path
            except OSError:
                continue
    return found


# -- network -----------------------------------------------------------------------------


def _hex_ipv4(text: str) -> str:
    return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(text, 16)))


def _hex_ipv6(text: str) -> str:
    return str(ipaddress.IPv6Address(bytes.fromhex(text)))


def routes_ipv4() -> list[dict[str, Any]]:
    """``/proc/net/route``: the main IPv4 table only (other tables need netlink)."""
    rows = []
    for line in _text(f"{PROC}/net/route").splitlines()[1:]:
        f = line.split()
        if len(f) < 11:
            continue
        flags = int(f[3], 16)
        prefix = ipaddress.IPv4Network("0.0.0.0/" + _hex_ipv4(f[7])).prefixlen
        rows.append(
            {
                "table": "main",
                "iface": f[0],
                "destination": f"{_hex_ipv4(f[1])}/{prefix}",
                "gateway": _hex_ipv4(f[2]) if flags & _RTF_GATEWAY else None,
                "flags": flags,
                "up": bool(flags & _RTF_UP),
                "reject": bool(flags & _RTF_REJECT),
                "metric": int(f[6]),
                "mtu": int(f[8]),
            }
        )
    return rows


def routes_ipv6() -> list[dict[str, Any]]:
    """``/proc/net/ipv6_route``: every IPv6 table (the file does not say which)."""
    rows = []
    for line in _text(f"{PROC}/net/ipv6_route").splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        flags = int(f[8], 16)
        gateway = _hex_ipv6(f[4])
        rows.append(
            {
                "iface": f[9],
                "destination": f"{_hex_ipv6(f[0])}/{int(f[1], 16)}",
                "source": f"{_hex_ipv6(f[2])}/{int(f[3], 16)}",
                "gateway": None if gateway == "::" else gateway,
                "metric": int(f[5], 16),
                "flags": flags,
                "up": bool(flags & _RTF_UP),
                "reject": bool(flags & _RTF_REJECT),
            }
        )
    return rows


_ARP_FLAGS = {0x2: "complete", 0x4: "permanent", 0x8: "published"}


def arp_cache() -> list[dict[str, Any]]:
    """``/proc/net/arp``: the IPv4 neighbour cache."""
    rows = []
    for line in _text(f"{PROC}/net/arp").splitlines()[1:]:
        f = line.split()
        if len(f) < 6:
            continue
        flags = int(f[2], 16)
        rows.append(
            {
                "address": f[0],
                "hw_type": int(f[1], 16),
                "flags": flags,
                "state": [name for bit, name in _ARP_FLAGS.items() if flags & bit]
                or ["incomplete"],
                "mac": f[3],
                "iface": f[5],
            }
        )
    return rows


# -- system ------------------------------------------------------------------------------


def kernel_modules() -> list[dict[str, Any]]:
    """``/proc/modules``; the taint letters in parentheses say which modules are
    out-of-tree (O), unsigned (E), proprietary (P) and so on."""
    return parse_modules(_text(f"{PROC}/modules"))


def parse_modules(text: str) -> list[dict[str, Any]]:
    """The rows of a ``/proc/modules`` text, however it was read."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6 or not f[1].isdigit():
            continue
        taint = f[6].strip("()") if len(f) > 6 else ""
        rows.append(
            {
                "name": f[0],
                "size": int(f[1]),
                "refcount": int(f[2]) if f[2].isdigit() else f[2],
                "used_by": [u for u in f[3].split(",") if u and u != "-"],
                "state": f[4],
                "address": f[5],
                "taint": taint,
            }
        )
    return rows


def decode_taint(value: int) -> list[dict[str, Any]]:
    """Every bit set in a taint value, in words; a bit this table does not know (a newer
    kernel's) is kept as ``?`` rather than dropped, so no set bit goes unreported."""
    return [
        {"bit": bit, "letter": letter, "meaning": meaning}
        for bit in range(max(value.bit_length(), 1))
        if value & (1 << bit)
        for letter, meaning in [TAINT_FLAGS.get(bit, ("?", f"unknown taint bit {bit}"))]
    ]


def kernel_taint() -> dict[str, Any]:
    value = int(_read(f"{PROC}/sys/kernel/tainted", 64).decode().strip())
    return {"value": value, "flags": decode_taint(value)}


def partitions() -> list[dict[str, Any]]:
    rows = []
    for line in _text(f"{PROC}/partitions").splitlines()[2:]:
        f = line.split()
        if len(f) == 4:
            rows.append(
                {"major": int(f[0]), "minor": int(f[1]), "blocks_1k": int(f[2]), "name": f[3]}
            )
    return rows


def mountinfo() -> list[dict[str, Any]]:
    """``/proc/self/mountinfo``: unlike psutil's list, it keeps bind mounts, mount ids,
    propagation and per-mount options (``noexec`` on /tmp matters to a responder).

    Read as bytes, lines cut at ``\\n`` only and fields at spaces only: the kernel escapes
    just space, tab, newline and backslash in a path, so anyone who can mount can name a
    mount point with VT, FF, ``\\x1c``-``\\x1f``, NEL or U+2028 in it, where
    ``str.splitlines`` and ``str.split`` also cut, and forge a row (a root device marked
    a network file system, which the timeline would then not walk)."""
    rows = []
    for line in _read(f"{PROC}/self/mountinfo").split(b"\n"):
        left, _, right = line.partition(b" - ")
        f, r = left.split(b" "), right.split(b" ")
        if len(f) < 6 or len(r) < 2:
            continue
        rows.append(
            {
                "mount_id": int(f[0]),
                "parent_id": int(f[1]),
                "dev": _field(f[2]),
                "root": _unescape(f[3]),
                "mountpoint": _unescape(f[4]),
                "options": _field(f[5]),
                "optional": [_field(x) for x in f[6:]],
                "fstype": _field(r[0]),
                "source": _unescape(r[1]),
                "super_options": _field(r[2]) if len(r) > 2 else "",
            }
        )
    return rows


def _field(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _unescape(raw: bytes) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return _OCTAL.sub(lambda m: bytes([int(m[1], 8) & 0xFF]), raw).decode("utf-8", "replace")


UTMP_PATHS = ("/run/utmp", "/var/run/utmp")


parse_utmp = utmp.parse_utmp  # re-exported: the system collector reads /run/utmp


class _Timex(ctypes.Structure):
    # struct timex (x86_64/aarch64 glibc): the fields read here, then padding.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("_rest", ctypes.c_byte * 128),
    ]


_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


def ntp_state() -> dict[str, Any]:
    """The kernel's NTP discipline state via ``adjtimex(2)`` with ``modes = 0`` (a pure
    read, allowed to any user): the same source ``timedatectl`` reports from."""
    # The process's own libc: find_library would run the host's /sbin/ldconfig.
    libc = ctypes.CDLL(None, use_errno=True)
    tx = _Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    if state < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return {
        "synchronised": state != _TIME_ERROR and not tx.status & _STA_UNSYNC,
        "clock_state": state,
        "status_bits": tx.status,
        "max_error_us": tx.maxerror,
        "est_error_us": tx.esterror,
        "offset": tx.offset,
        "freq": tx.freq,
    }
