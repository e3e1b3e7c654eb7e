"""What each attempt to store evidence becomes: one ``artifact``, ``skipped`` or ``error``
record, counted for the closing box, and the bookkeeping every store shares (stored names
claimed once, room left on the output for the seal).

The copy engine (``collectors.copy``) builds on this; collectors reach it as
``ctx.engine.record_error`` and friends."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from manifests.writer import EvidenceWriter

from .pathmap import StoredNames, describe

# Free space always left on the output, so the journal, SHA256SUMS and the manifest can
# still be written and sealed after collection stops for lack of room.
SPACE_MARGIN = 4 * 1024 * 1024


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


class Recorder:
    """Journals outcomes and reserves names for one evidence directory."""

    def __init__(self, writer: EvidenceWriter) -> None:
        self.writer = writer
        self.journal = writer.journal
        self.counters = Counters()
        self.full = threading.Event()
        self.names = StoredNames()
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

    def record_skip(self, collector: str, source: bytes, reason: str, **fields: Any) -> None:
        self.counters.add(skipped=1)
        self.journal.append(
            "skipped", collector=collector, source=describe(source), reason=reason, **fields
        )

    def _claim(self, rel: str) -> str:
        """Reserve a stored path; a second claim of the same name, or of one that differs
        only in case, gets a ``~N`` suffix (``pathmap.StoredNames``)."""
        return self.names.claim(rel)

    def _discard(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.writer.discard(rel)

    def _out_of_space(self, collector: str, source: bytes | None, rel: str) -> None:
        self._discard(rel)
        if not self.full.is_set():
            self.full.set()
            self.record_error(
                collector,
                source,
                "output disk full: collection stopped",
                errno="ENOSPC",
                stored_path=rel,
            )

    def _room_for(self, size: int, collector: str, source: bytes | None, rel: str) -> bool:
        """Stop before the output is full, keeping SPACE_MARGIN for the seal."""
        free = self.writer.free_bytes()
        if free is None or free - size >= SPACE_MARGIN:
            return True
        self._out_of_space(collector, source, rel)
        return False
