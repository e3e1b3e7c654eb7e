"""Process accounting records (``acct(5)``, ``struct acct_v3`` of
include/uapi/linux/acct.h), decoded without ``lastcomm`` or ``dump-acct``.

With accounting on (``accton``, the ``acct``/``psacct`` package), the kernel appends one
64-byte record per process that exits: its command name (16 bytes), user, parent, start
time, elapsed and CPU time, exit code and flags. It survives a deleted shell history and
records processes ``ps`` never saw: the short-lived ``nc``, ``wget`` or miner run from a
cron job. Times in ``comp_t`` (13-bit mantissa, base-8 exponent) count ``AHZ`` (100) ticks."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from functools import lru_cache
from operator import itemgetter
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


_FLAGS = ["".join(ch for bit, ch in FLAGS if value & bit) for value in range(256)]


@lru_cache(maxsize=4096)
def command_of(comm: bytes) -> str:
    """The command name of a record (a few hundred distinct ones in 50,000 records)."""
    return comm.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _record(v: tuple[Any, ...]) -> dict[str, Any]:
    (flag, _v, tty, status, uid, gid, pid, ppid, btime, etime, utime, stime, mem, io, rw,
     minflt, majflt, _swaps, comm) = v  # fmt: skip
    c = _COMP
    return {
        "command": command_of(comm),
        "pid": pid, "ppid": ppid, "uid": uid, "gid": gid, "tty": tty,
        # The wait status: exit code in the second byte, the killing signal in the first.
        "exitcode": status >> 8 & 0xFF, "signal": status & 0x7F,
        "started": btime, "elapsed_s": round(etime / AHZ, 2),
        "user_s": c[utime] / AHZ, "system_s": c[stime] / AHZ, "mem_kib": c[mem],
        "io_chars": c[io], "rw_blocks": c[rw], "minflt": c[minflt], "majflt": c[majflt],
        "flags": _FLAGS[flag],
    }  # fmt: skip


def fact_fields(
    host: str, users: dict[int, str], window: int
) -> dict[str, Callable[[tuple[Any, ...]], Any]]:
    """How each field of a ``process-record`` fact comes from a record's fields, so that
    only those the rules read are worked out for each of 50,000 records (``host``: the
    file's path; ``users``: names by UID; ``window``: the detection window's start, ns)."""
    return {
        "path": lambda v: host, "command": lambda v: command_of(v[18]),
        "user": lambda v: users.get(v[4], ""), "uid": itemgetter(4), "pid": itemgetter(6),
        "ppid": itemgetter(7), "exitcode": lambda v: v[3] >> 8 & 0xFF,
        "flags": lambda v: _FLAGS[v[0]], "changed_ns": lambda v: v[8] * 10**9,
        "in_window": lambda v: v[8] * 10**9 >= window,
    }  # fmt: skip


def _unpack(data: bytes, offset: int = 0) -> tuple[Any, ...] | None:
    """The fields of the record at ``offset``, or None when it is not a version-3 record."""
    version = data[offset + 1]
    if version & 0x7F != ACCT_VERSION:
        return None
    fmt = RECORD_BE if version & ACCT_BYTEORDER else RECORD
    return fmt.unpack_from(data, offset)


def decode(data: bytes, offset: int = 0) -> dict[str, Any] | None:
    """One record at ``offset``, or None when it is not a version-3 record."""
    v = _unpack(data, offset)
    return None if v is None else _record(v)


def unpacked(data: bytes) -> Iterator[tuple[int, tuple[Any, ...] | None]]:
    """(offset, the record's fields or None when unreadable) for each whole record of
    ``data``: ``fact_of`` and ``row`` make what is needed of them."""
    whole = len(data) - len(data) % SIZE
    view = memoryview(data)[:whole]
    for i, v in enumerate(RECORD.iter_unpack(view)):
        if v[1] == ACCT_VERSION:
            yield i * SIZE, v
        else:  # big-endian or not a v3 record
            yield i * SIZE, _unpack(data, i * SIZE)


def records(data: bytes) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(offset, record or None when unreadable) for each whole record of ``data``."""
    for offset, v in unpacked(data):
        yield offset, None if v is None else _record(v)


@lru_cache(maxsize=4096)
def _string(value: str) -> str:
    return json.dumps(value)


def _float(value: float) -> str:
    return repr(value) if math.isfinite(value) else json.dumps(value)


def row(v: tuple[Any, ...], offset: int, user: str) -> str:
    """One record as the JSON line ``json.dumps({"offset": ..., **record, "user": ...},
    sort_keys=True)`` writes, an order of magnitude faster: the keys are fixed, and only
    the two strings need JSON's escaping (cached: few distinct commands and users)."""
    r = _record(v)
    return (
        f'{{"command": {_string(r["command"])}, "elapsed_s": {_float(r["elapsed_s"])}, '
        f'"exitcode": {r["exitcode"]}, "flags": "{r["flags"]}", "gid": {r["gid"]}, '
        f'"io_chars": {r["io_chars"]}, "majflt": {r["majflt"]}, "mem_kib": {r["mem_kib"]}, '
        f'"minflt": {r["minflt"]}, "offset": {offset}, "pid": {r["pid"]}, '
        f'"ppid": {r["ppid"]}, "rw_blocks": {r["rw_blocks"]}, "signal": {r["signal"]}, '
        f'"started": {r["started"]}, "system_s": {_float(r["system_s"])}, '
        f'"tty": {r["tty"]}, "uid": {r["uid"]}, "user": {_string(user)}, '
        f'"user_s": {_float(r["user_s"])}}}\n'
    )
