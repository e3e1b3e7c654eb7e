"""Storing what the tool produced itself (JSON snapshots, text views) and what a host
command it ran wrote into the evidence directory (``wevtutil epl``, ``log collect``): one
artifact record each, through the evidence writer, like every copy. The copy engine
(``collectors.copy``) builds on this."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from manifests.errors import EvidenceLostError
from manifests.sink import NotRegularFileError
from manifests.writer import EvidenceWriter

from .outcomes import Recorder
from .stream import StreamedArtifact
from .tally import ByteTally


class GeneratedStore(Recorder):
    """Stores bytes that do not come from a host file."""

    def __init__(self, writer: EvidenceWriter) -> None:
        super().__init__(writer)
        self.root: Path = writer.root
        self.read = ByteTally()  # bytes read so far, a chunk at a time: the live progress

    def store_bytes(self, rel: str, data: bytes, collector: str, **fields: Any) -> dict | None:
        """Store data the tool produced itself (JSON snapshots, text views)."""
        if self.stopped.is_set() or self._skipped_when_full(collector, None, rel):
            return None
        if not self._admit(len(data), len(data), collector, None, stored_path=rel):
            return None
        rel = self._claim(rel)
        try:
            digest = self.writer.store_artifact(rel, data)
        except EvidenceLostError:
            raise
        except OSError as e:
            if e.errno == errno.ENOSPC:
                self._out_of_space(collector, None, rel)
                return None
            raise
        finally:
            self._release(len(data))
        self.counters.add(stored=1, bytes=len(data))
        self.read.add(len(data))
        record = self.journal.append(
            "artifact", collector=collector, path=rel, size=len(data), sha256=digest, **fields
        )
        self.writer.commit(rel)
        return record

    def reserve(self, rel: str) -> str:
        """Claim a stored path for a file an external command will write (then ``adopt``)."""
        rel = self._claim(rel)
        self.writer.local_path(rel)
        return rel

    def adopt(self, rel: str, collector: str, **fields: Any) -> dict[str, Any] | None:
        """Journal a file that a command run by the tool wrote inside the evidence directory
        (``wevtutil epl``, ``log collect``): hash it as it is and make it read-only."""
        try:
            digest, size = self.writer.hash_stored(rel)
        except NotRegularFileError:
            self.record_error(
                collector, None, "command output is not a regular file", stored_path=rel, **fields
            )
            return None
        except OSError as e:
            self.record_error(
                collector,
                None,
                f"output of the command is missing: {e.strerror}",
                stored_path=rel,
                **fields,
            )
            return None
        self.counters.add(stored=1, bytes=size)
        self.read.add(size)
        return self.journal.append(
            "artifact", collector=collector, path=rel, size=size, sha256=digest, **fields
        )

    def open_stream(self, rel: str, collector: str, **fields: Any) -> StreamedArtifact:
        """One artifact written a piece at a time, in bounded memory (collectors/stream.py)."""
        return StreamedArtifact(self, rel, collector, fields)
