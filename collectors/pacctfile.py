"""Process accounting records (``acct(5)``, ``struct acct_v3`` of
include/uapi/linux/acct.h), decoded without ``lastcomm`` or ``dump-acct``.

With accounting on (``accton``, the ``acct``/``psacct`` package), the kernel appends one
64-byte record per process that exits: its command name (16 bytes), user, parent, start
time, elapsed and CPU time, exit code and flags. It survives a deleted shell history and
records processes ``ps`` never saw: the short-lived ``nc``, ``wget`` or miner run from a
cron job. Times in ``comp_t`` (13-bit mantissa, base-8 exponent) count ``AHZ`` (100) ticks."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

RECORD = struct.Struct("<BBHIIIIIIf8H16s")  # acct_v3, 64 bytes (little-endian hosts)
RECORD_BE = struct.Struct(">BBHIIIIIIf8H16s")
SIZE = RECORD.size
AHZ = 100
ACCT_VERSION, ACCT_BYTEORDER = 3, 0x80
FLAGS = ((0x01, "F"), (0x02, "S"), (0x08, "C"), (0x10, "X"))  # fork, su, core, killed
assert SIZE == 64


def comp_t(value: int) -> int:
    """A ``comp_t``: 13-bit mantissa, 3-bit exponent in powers of 8."""
    return (value & 0x1FFF) << (((value >> 13) & 7) * 3)


_COMP = [comp_t(v) for v in range(1 << 16)]  # every comp_t, decoded once


def _record(v: tuple[Any, ...]) -> dict[str, Any]:
    (flag, _v, tty, status, uid, gid, pid, ppid, btime, etime, utime, stime, mem, io, rw,
     minflt, majflt, _swaps, comm) = v  # fmt: skip
    c = _COMP
    return {
        "command": comm.split(b"\0", 1)[0].decode("utf-8", "backslashreplace"),
        "pid": pid, "ppid": ppid, "uid": uid, "gid": gid, "tty": tty,
        # The wait status: exit code in the second byte, the killing signal in the first.
        "exitcode": status >> 8 & 0xFF, "signal": status & 0x7F,
        "started": btime, "elapsed_s": round(etime / AHZ, 2),
        "user_s": c[utime] / AHZ, "system_s": c[stime] / AHZ, "mem_kib": c[mem],
        "io_chars": c[io], "rw_blocks": c[rw], "minflt": c[minflt], "majflt": c[majflt],
        "flags": "".join(ch for bit, ch in FLAGS if flag & bit),
    }  # fmt: skip


def decode(data: bytes, offset: int = 0) -> dict[str, Any] | None:
    """One record at ``offset``, or None when it is not a version-3 record."""
    version = data[offset + 1]
    if version & 0x7F != ACCT_VERSION:
        return None
    fmt = RECORD_BE if version & ACCT_BYTEORDER else RECORD
    return _record(fmt.unpack_from(data, offset))


def records(data: bytes) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(offset, record or None when unreadable) for each whole record of ``data``."""
    whole = len(data) - len(data) % SIZE
    view = memoryview(data)[:whole]
    for i, v in enumerate(RECORD.iter_unpack(view)):
        if v[1] == ACCT_VERSION:
            yield i * SIZE, _record(v)
        else:  # big-endian or not a v3 record
            yield i * SIZE, decode(data, i * SIZE)
