"""One artifact written as a stream: data the tool produces a piece at a time (a bodyfile
of a whole file system, a hash listing), stored in bounded memory as ONE artifact with
ONE journal record, however many lines it has.

``CopyEngine.store_bytes`` needs the whole content in memory; a timeline of a million
files would not fit. Here each ``write`` goes to the evidence drive through the same
writer (a partial name first, renamed once the record is journaled) and into a running
SHA-256, so the record says exactly what was written."""

from __future__ import annotations

import errno
import hashlib
from types import TracebackType
from typing import TYPE_CHECKING, Any

from manifests.errors import EvidenceLostError

if TYPE_CHECKING:
    from manifests.sink import SinkFile

    from .generated import GeneratedStore

BUFFER = 1024 * 1024  # bytes gathered before one write to the drive


class StreamedArtifact:
    """Use as a context manager: ``with engine.open_stream(rel, name) as out: out.write(b)``.
    On a clean exit the artifact is journaled (``record`` is then its record); on an
    exception, a full drive or a stopped run it is discarded and not journaled."""

    def __init__(self, engine: GeneratedStore, rel: str, collector: str, fields: dict[str, Any]):
        self.engine = engine
        self.collector = collector
        self.fields = fields
        self.rel = engine._claim(rel)
        self.record: dict[str, Any] | None = None
        self.size = 0
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._file: SinkFile | None = None
        if engine.stopped.is_set() or engine._skipped_when_full(collector, None, self.rel):
            return
        try:
            self._file = engine.writer.create_file(self.rel)
        except EvidenceLostError:
            raise
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            engine._out_of_space(collector, None, self.rel)

    def __enter__(self) -> StreamedArtifact:
        return self

    def write(self, data: bytes) -> None:
        if self._file is None:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= BUFFER:
            self._flush()

    def _flush(self) -> None:
        if self._file is None or not self._pending:
            return
        chunk = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        try:
            self._file.write(chunk)
        except EvidenceLostError:
            raise
        except OSError as e:
            self._abandon(e)
            return
        self._hash.update(chunk)
        self.size += len(chunk)

    def _abandon(self, error: OSError) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        if error.errno == errno.ENOSPC:
            self.engine._out_of_space(self.collector, None, self.rel)
        else:
            self.engine._discard(self.rel)
            self.engine.record_error(
                self.collector,
                None,
                f"writing to the evidence drive failed: {error.strerror}",
                stored_path=self.rel,
            )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is None:
            return
        if kind is None and not self.engine.stopped.is_set():
            self._flush()
        if self._file is None:
            return
        if kind is not None or self.engine.stopped.is_set():
            self._file.close()
            self._file = None
            self.engine._discard(self.rel)
            return
        try:
            self._file.finish(self.size)
        except OSError as e:
            if isinstance(e, EvidenceLostError):
                raise
            self._abandon(e)
            return
        self._file.close()
        self._file = None
        self.engine.counters.add(stored=1, bytes=self.size)
        self.record = self.engine.journal.append(
            "artifact",
            collector=self.collector,
            path=self.rel,
            size=self.size,
            sha256=self._hash.hexdigest(),
            **self.fields,
        )
        self.engine.writer.commit(self.rel)
        self.engine.journal.seal_if_due()
