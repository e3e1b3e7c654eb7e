"""Digests one collector computed that a later one in the same run needs: the
``packages`` collector reads every package file for its MD5 and, when ``executables``
runs too, takes the SHA-256 of the executables among them from the same read, so the
largest files on a server (libraries, interpreters) are read and hashed once, not twice.

A digest is handed on by inode (``st_dev``, ``st_ino``) and reused only while the stat the
later walk takes shows the same size, modification time and change time as the stat of
the descriptor that was read; any write to the file, or resetting its times, moves the
change time, so a file changed in between is read again, never reported with the old
digest. A file whose change time is less than a second old when its digest is offered
is not handed on: where the kernel keeps times at clock-tick granularity a write in the
same tick as the last one would leave the change time as it was. Kept in
``ctx.shared["digests"]`` and taken out by the one collector that uses each entry
(memory: one small bytes object per file, a few thousand on a server).

The two collectors may run at the same time (``packages`` alongside its stage, see
agent/alongside.py): the table is then offered before either starts, and the later
collector asks it for digests only once the earlier one has ``finish``ed it (``wait``),
hashing meanwhile only what the table cannot hold. A file is therefore never hashed by
both, nor reported with a digest that was still to come."""

from __future__ import annotations

import os
import struct
import threading
import time

from .context import CollectContext

KEY = "digests"
_STAMP = struct.Struct("=qqq")  # size, mtime_ns, ctime_ns
SETTLED_NS = 1_000_000_000  # how old a change time must be for its digest to be handed on


def _stamp(st: os.stat_result) -> bytes:
    return _STAMP.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class RunDigests:
    """One algorithm's digests by inode (thread-safe for ``put`` from many threads: a
    dict assignment is atomic under the GIL)."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._by_inode: dict[tuple[int, int], bytes] = {}
        self._finished = threading.Event()

    def __len__(self) -> int:
        return len(self._by_inode)

    def put(self, st: os.stat_result, hexdigest: str) -> None:
        """Record the digest of the file whose descriptor's stat was ``st`` (called once
        it is read), unless it changed too recently to tell a later change by its stat."""
        self.put_fields(
            st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            bytes.fromhex(hexdigest),
        )  # fmt: skip

    def put_fields(
        self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int, digest: bytes
    ) -> None:
        """``put`` from the stat fields it uses and the raw digest (what a child process
        reading the files sends back, collectors/pkgforked.py)."""
        if ctime_ns > time.time_ns() - SETTLED_NS:
            return
        self._by_inode[(dev, ino)] = _STAMP.pack(size, mtime_ns, ctime_ns) + digest

    def finish(self) -> None:
        """The offering collector is done: every digest it will give is in."""
        self._finished.set()

    def finished(self) -> bool:
        return self._finished.is_set()

    def wait(self) -> None:
        """Until ``finish``. Not cut short by a stop signal: the offering collector does
        not stop inside itself either (agent/stopsignals.py), so it finishes soon enough,
        and giving up would read again what it is reading."""
        self._finished.wait()

    def take(self, st: os.stat_result) -> str | None:
        """The digest of the file ``st`` describes if it was read unchanged, else None;
        the entry is dropped either way (each file is asked for once)."""
        held = self._by_inode.pop((st.st_dev, st.st_ino), None)
        if held is None or held[: _STAMP.size] != _stamp(st):
            return None
        return held[_STAMP.size :].hex()


def offer(ctx: CollectContext, algorithm: str) -> RunDigests:
    """A new table for ``algorithm``'s digests, shared with later collectors of the run."""
    table = RunDigests(algorithm)
    ctx.shared[KEY] = table
    return table


def taken(ctx: CollectContext, algorithm: str) -> RunDigests | None:
    """The table an earlier collector offered for ``algorithm``, removed from the run's
    shared state (its user frees it when done), or None."""
    table = ctx.shared.get(KEY)
    if not isinstance(table, RunDigests) or table.algorithm != algorithm:
        return None
    del ctx.shared[KEY]
    return table
