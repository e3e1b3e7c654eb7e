"""What each attempt to store evidence becomes: one ``artifact``, ``skipped`` or ``error``
record, counted for the closing box, and the bookkeeping every store shares (stored names
claimed once, room left on the output for the seal).

Room is decided before a byte is read: a file larger than the output's file system holds
(FAT32: 4 GiB) is refused, and one that does not fit in the space left is recorded as
such while the run goes on with the rest. Only when nothing more can be stored (less than
``FULL_BELOW`` beyond the reserve kept for sealing) does collection stop; every item it
then does not attempt is journaled as ``skipped``, one record each up to
``UNTRIED_RECORDS_MAX``, the rest counted in one closing record.

The copy engine (``collectors.copy``) builds on this; collectors reach it as
``ctx.engine.record_error`` and friends."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from manifests.writer import EvidenceWriter

from .pathmap import StoredNames, describe

# Free space always left on the output, so the journal, SHA256SUMS and the manifest can
# still be written and sealed after collection stops for lack of room. SHA256SUMS's own
# size (one line an artifact) is kept free on top of it.
SPACE_MARGIN = 4 * 1024 * 1024
# Less room than this beyond the reserve: nothing more is worth attempting, stop.
FULL_BELOW = 1024 * 1024
# Items not attempted after the stop get one record each up to here; the rest are counted.
UNTRIED_RECORDS_MAX = 10_000
UNTRIED = "output drive full: not attempted"


@dataclass
class Counters:
    stored: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def as_dict(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "skipped": self.skipped,
            "failed": self.failed,
            "bytes": self.bytes,
        }


class StopFlag:
    """Like ``threading.Event`` for ``set``/``is_set``, but without a lock, so that a
    signal handler can set it whatever the interrupted thread was holding."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class Recorder:
    """Journals outcomes and reserves names for one evidence directory."""

    def __init__(self, writer: EvidenceWriter) -> None:
        self.writer = writer
        self.journal = writer.journal
        self.counters = Counters()
        self.full = threading.Event()
        # Set when the responder interrupts the run (from a signal handler: no lock):
        # copies in progress stop at the next chunk and queued ones are not started.
        self.stopped = StopFlag()
        self._space_lock = threading.Lock()
        self._in_flight = 0  # bytes admitted for copies still being written
        self.names = StoredNames()
        self._untried_lock = threading.Lock()
        self._untried_listed = 0
        self._untried_counted: Counter[str] = Counter()
        self.on_error: Callable[[dict[str, Any]], None] | None = None

    def record_error(
        self, collector: str, source: bytes | None, reason: str, **fields: Any
    ) -> dict[str, Any]:
        self.counters.add(failed=1)
        src = describe(source) if source is not None else None
        record = self.journal.append(
            "error", collector=collector, source=src, reason=reason, **fields
        )
        if self.on_error:
            self.on_error(record)
        return record

    def record_skip(self, collector: str, source: bytes | None, reason: str, **fields: Any) -> None:
        self.counters.add(skipped=1)
        src = describe(source) if source is not None else None
        self.journal.append("skipped", collector=collector, source=src, reason=reason, **fields)

    def _claim(self, rel: str) -> str:
        """Reserve a stored path; a second claim of the same name, or of one that differs
        only in case, gets a ``~N`` suffix (``pathmap.StoredNames``)."""
        return self.names.claim(rel)

    def _discard(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.writer.discard(rel)

    # -- room on the output ----------------------------------------------------------

    def _reserve(self) -> int:
        """Bytes that must stay free for closing the directory."""
        return SPACE_MARGIN + self.journal.sums_size

    def _keeps_holes(self, st: os.stat_result) -> bool:
        """Copy a sparse source (lastlog, VM images) with its holes? Only where the output
        stores holes; FAT and exFAT get the zeros written out."""
        return self.writer.file_system.supports_holes and st.st_blocks * 512 < st.st_size

    def _space_needed(self, st: os.stat_result, size: int, keeps_holes: bool) -> int:
        """What storing ``size`` bytes of ``st`` will take: what the source allocates when
        holes stay holes, else every byte."""
        return min(size, st.st_blocks * 512) if keeps_holes else size

    def _admit(
        self, size: int, needed: int, collector: str, source: bytes | None, **fields: Any
    ) -> bool:
        """Can ``size`` bytes (taking ``needed`` on the drive) be stored? Decided before a
        byte is read; a refusal is journaled, and a full drive stops collection."""
        fs = self.writer.file_system
        if fs.max_file_size is not None and size > fs.max_file_size:
            limit = f"{(fs.max_file_size + 1) >> 30} GiB"
            self.record_error(
                collector,
                source,
                f"larger than {fs.name}'s {limit} file limit ({size} bytes): "
                "use an exFAT or ext4 drive for this file",
                **fields,
            )
            return False
        return self._room_for(needed, collector, source, **fields)

    def _room_for(self, size: int, collector: str, source: bytes | None, **fields: Any) -> bool:
        """Is there room for ``size`` more bytes, keeping the reserve for the seal?"""
        room = self._take_room(size)
        if room is None:
            return True
        if room < FULL_BELOW:
            self._stop_full(collector, source, **fields)
        else:
            self._does_not_fit(collector, source, f"{size} bytes, {room} free", **fields)
        return False

    def _take_room(self, size: int) -> int | None:
        """Reserve room for ``size`` bytes and return None; or, journaling nothing, return
        the room there is (``_room_for`` says why; a batch goes file by file)."""
        free = self.writer.free_bytes()
        if free is None:
            return None
        with self._space_lock:
            # Copies running in parallel each hold their room until they end (``_release``),
            # so two of them never both take the last free megabytes, the seal's reserve.
            room = free - self._reserve() - self._in_flight
            if room >= size:
                self._in_flight += size
                return None
        return room

    def _release(self, size: int) -> None:
        """A copy admitted by ``_room_for`` has ended: its bytes are on the drive now, or
        were never written."""
        if self.writer.free_bytes() is None:
            return
        with self._space_lock:
            self._in_flight = max(0, self._in_flight - size)

    def _does_not_fit(self, collector: str, source: bytes | None, what: str, **fields: Any) -> None:
        self.record_error(
            collector, source, f"does not fit: {what}; use a larger drive for it", **fields
        )

    def _stop_full(self, collector: str, source: bytes | None, **fields: Any) -> None:
        """Nothing more can be stored: the first to find out says so and stops the run;
        an item that finds out later was not attempted."""
        with self._untried_lock:
            first = not self.full.is_set()
            self.full.set()
        if first:
            self.record_error(
                collector, source, "output disk full: collection stopped", errno="ENOSPC", **fields
            )
        else:
            self._skipped_when_full(collector, source, fields.get("stored_path"))

    def _out_of_space(self, collector: str, source: bytes | None, rel: str) -> None:
        """The drive ran out of room while ``rel`` was written (``ENOSPC``): the partial
        copy goes, and the run goes on if something else can still be stored."""
        self._discard(rel)
        free = self.writer.free_bytes()
        room = None if free is None else free - self._reserve()
        if room is not None and room >= FULL_BELOW:
            self._does_not_fit(collector, source, f"ran out of room, {room} free", stored_path=rel)
        elif self.full.is_set():
            self.record_error(collector, source, "output disk full: not stored", stored_path=rel)
        else:
            self._stop_full(collector, source, stored_path=rel)

    # -- items not attempted after a full drive ------------------------------------------

    def _skipped_when_full(
        self, collector: str, source: bytes | None, rel: str | None, reason: str = UNTRIED
    ) -> bool:
        """After the drive filled up, journal ``source``/``rel`` as not attempted and
        return True; before, return False."""
        if not self.full.is_set():
            return False
        with self._untried_lock:
            listed = self._untried_listed < UNTRIED_RECORDS_MAX and self._journal_has_room()
            if listed:
                self._untried_listed += 1
            else:
                self._untried_counted[collector] += 1
        if listed:
            fields = {"stored_path": rel} if rel else {}
            self.record_skip(collector, source, reason, **fields)
        else:
            self.counters.add(skipped=1)
        return True

    def _journal_has_room(self) -> bool:
        """Records of items not attempted may use half the reserve, never the seal's part."""
        free = self.writer.free_bytes()
        return free is None or free >= self._reserve() - SPACE_MARGIN // 2

    def record_not_run(self, collector: str) -> None:
        """A collector that never ran because the drive had filled up."""
        self._skipped_when_full(collector, None, None, "output drive full: collector not run")

    def close_untried(self) -> None:
        """The one record for the items not attempted beyond ``UNTRIED_RECORDS_MAX``."""
        with self._untried_lock:
            counted, self._untried_counted = self._untried_counted, Counter()
        if counted:
            total = sum(counted.values())
            self.journal.append(
                "skipped",
                collector="preserve",
                source=None,
                reason=f"{UNTRIED}: {total} more items, counted here, not listed one by one",
                count=total,
                by_collector=dict(sorted(counted.items())),
            )
