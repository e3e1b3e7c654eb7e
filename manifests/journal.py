"""The custody journal: an append-only file of canonical JSON records, one a line.

Each record carries ``seq`` and ``prev`` (the SHA-256 of the previous line's bytes, without
its newline), so removing, reordering or editing any line breaks the chain. ``seal``
records sign the chain head with Ed25519. Writes go straight to the file (through the
evidence directory's sink); a background group commit fsyncs at least every
``COMMIT_INTERVAL`` seconds, and every seal first flushes the whole evidence directory so
that the seal only vouches for bytes on stable storage.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import canonical, clock
from .digest import ZERO_HASH, sha256_bytes
from .durable import fsync_dir, syncfs
from .errors import EvidenceLostError
from .signing import Signer
from .sink import LocalFile, SinkFile
from .sums import sums_line

COMMIT_INTERVAL = 0.2
# Long stages are sealed at least this often, so a killed run loses at most this much.
SEAL_INTERVAL = 5.0
SEAL_FIELD = "signature"
# SHA256SUMS kept in memory as artifacts are journaled, up to this size (~300,000
# files); beyond, or for a journal continued from an earlier run, the writer reads the
# journal back for it instead.
KEPT_SUMS = 32 * 1024 * 1024
# The reason of the giver's countersignature on a transfer (before the receiver's seal).
HANDOVER = "handover"


def _check_numbers(record: dict[str, Any]) -> None:
    """The journal's rule for numbers: integers within +-(2**53 - 1) only, so that every
    JSON reader gets back the very value that was hashed. A float (or a bigger integer)
    raises TypeError (ValueError) naming the field, e.g. ``state.routes[2].metric``;
    ``journal_safe`` turns foreign data into what the rule allows."""
    stack: list[tuple[str, Any]] = [(str(key), value) for key, value in record.items()]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float):
            raise TypeError(
                f"journal record {record.get('type')!r}: field {where} is a float "
                f"({value!r}); the journal takes no floats (write a string or an integer)"
            )
        if isinstance(value, int) and abs(value) > canonical.MAX_SAFE_INT:
            raise ValueError(
                f"journal record {record.get('type')!r}: field {where} is an integer beyond "
                f"2**53 - 1 ({value}); write it as a string"
            )
        if isinstance(value, dict):
            stack.extend((f"{where}.{key}", item) for key, item in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def journal_safe(value: Any) -> Any:
    """Foreign JSON (a host tool's ``-j`` output) as the journal may hold it: floats and
    out-of-range integers become strings, keys become strings."""
    if isinstance(value, float) or (isinstance(value, int) and abs(value) > canonical.MAX_SAFE_INT):
        return str(value)
    if isinstance(value, list):
        return [journal_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): journal_safe(v) for k, v in value.items()}
    return value


def seal_message(record: dict[str, Any]) -> bytes:
    """What a seal's signature covers: the seal record itself, less the signature."""
    return canonical.dumps({k: v for k, v in record.items() if k != SEAL_FIELD})


class Journal:
    """Thread-safe writer. Collectors call ``append`` from worker threads.

    Constructed on an open ``file`` whose chain so far ends at ``next_seq - 1`` with
    ``head`` (``ZERO_HASH`` and 0 for a new journal); ``flush_evidence`` puts every file
    of the evidence on stable storage before a seal."""

    def __init__(
        self,
        file: SinkFile,
        next_seq: int,
        head: str,
        signer: Signer,
        flush_evidence: Callable[[], None],
        path: Path | None = None,
    ) -> None:
        # ``path`` is informative (messages, tests); writes go through ``file`` only.
        self.path = path
        self._file = file
        self._held: list[bytes] | None = None  # lines kept back by ``as_one_write``
        self._flush_evidence = flush_evidence
        self._seq = next_seq
        self._head = head
        self._signer = signer
        self._lock = threading.Lock()
        self._dirty = False
        self._sealing = threading.Lock()
        self._last_seal = time.monotonic()
        self.sums_size = 0  # bytes SHA256SUMS will take: room the drive must keep for it
        self._sums: bytearray | None = bytearray() if next_seq == 0 else None
        self._sums_entries = 0
        self._closed = threading.Event()
        self._committer = threading.Thread(target=self._group_commit, daemon=True)
        self._committer.start()

    @classmethod
    def create(cls, path: Path, signer: Signer) -> Journal:
        """A new journal file at ``path`` on its own, outside an evidence writer (tests,
        tools); collection creates its journal through ``manifests.writer``."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fsync_dir(path.parent)
        return cls(LocalFile(fd), 0, ZERO_HASH, signer, lambda: syncfs(path.parent), path)

    @property
    def head(self) -> str:
        return self._head

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def signer(self) -> Signer:
        return self._signer

    def _write(self, record: dict[str, Any]) -> dict[str, Any]:
        line = canonical.dumps(record, check=_check_numbers)  # raises before anything is written
        self._put(line + b"\n")
        self._advance(sha256_bytes(line), 1, record)
        return record

    def _put(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        else:
            self._file.write(data)

    def _advance(self, head: str, count: int, *records: dict[str, Any]) -> None:
        """The chain after ``count`` more lines, once they are written (a failed write
        leaves it where it was)."""
        self._head = head
        self._seq += count
        self._dirty = True
        for record in records:
            if record["type"] == "artifact":
                line = sums_line(record["path"], record["sha256"])
                self.sums_size += len(line)
                if self._sums is None:
                    continue
                if len(self._sums) + len(line) > KEPT_SUMS:
                    self._sums = None
                    continue
                self._sums += line
                self._sums_entries += 1

    def kept_sums(self) -> tuple[bytes, int] | None:
        """``SHA256SUMS`` of every artifact journaled, in journal order, and its number of
        lines, when all of them were kept in memory (``KEPT_SUMS``); else None."""
        with self._lock:
            if self._sums is None:
                return None
            return bytes(self._sums), self._sums_entries

    def _frame(self, type_: str) -> dict[str, Any]:
        return {"seq": self._seq, "prev": self._head, **clock.reading(), "type": type_}

    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            return self._write({**self._frame(type_), **fields})

    def append_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Records ``(type, fields)`` appended in order, one line each as ``append``
        makes them, in one ``write``: a batch of small copies costs one system call, not
        one a file. If any record cannot be serialised, none of them is written."""
        with self._lock:
            seq, head, time_fields = self._seq, self._head, clock.reading()
            records, lines = [], []
            for type_, fields in items:
                record = {"seq": seq, "prev": head, **time_fields, "type": type_, **fields}
                line = canonical.dumps(record, check=_check_numbers)
                lines.append(line)
                head, seq = sha256_bytes(line), seq + 1
                records.append(record)
            if not records:
                return records
            lines.append(b"")
            self._put(b"\n".join(lines))
            self._advance(head, len(records), *records)
            return records

    def seal_if_due(
        self, interval: float = SEAL_INTERVAL, before: Callable[[], None] | None = None
    ) -> None:
        """Seal from a worker thread when the last seal is old; never waits for another.
        ``before`` makes a file still being written durable first (a disk image's part,
        which the sink's own flush does not cover)."""
        if time.monotonic() - self._last_seal < interval or not self._sealing.acquire(False):
            return
        try:
            if time.monotonic() - self._last_seal >= interval:
                if before is not None:
                    before()
                self.seal("periodic")
        finally:
            self._sealing.release()

    def seal(
        self, reason: str, signer: Signer | None = None, journal_only: bool = False
    ) -> dict[str, Any]:
        """Flush the evidence to disk, then sign the chain head.

        ``journal_only`` is for seals that cover no artifact yet (the start seal): an
        ``fsync`` of the journal is then enough, and it keeps a whole-file-system flush
        (0.6 s on a busy disk) out of the time before network isolation."""
        signer = signer or self._signer
        flushed_before = self._seq
        if not journal_only:
            self._flush_evidence()
        with self._lock:
            if not journal_only and self._seq != flushed_before:
                # Records appended while the flush ran may name bytes written after it
                # began: flush again, with appends held off, so the seal covers them too.
                self._flush_evidence()
            self._last_seal = time.monotonic()
            record = {**self._frame("seal"), "reason": reason, "signer": signer.fingerprint}
            signature = signer.sign(seal_message(record))
            record[SEAL_FIELD] = base64.b64encode(signature).decode("ascii")
            self._write(record)
            if self._held is None:
                self._file.fsync()
                self._dirty = False
            return record

    @contextlib.contextmanager
    def as_one_write(self) -> Iterator[None]:
        """Records appended and sealed inside the block reach the file in one ``write``
        at its end, then one ``fsync``: a custody transfer and the seal that makes it
        valid land together or not at all (a killed ``custody`` leaves no holder who
        never signed). Nothing is written if the block raises."""
        with self._lock:
            start = (self._seq, self._head)
            self._held = []
        try:
            yield
        except BaseException:
            with self._lock:
                self._seq, self._head = start
                self._held = None
            raise
        with self._lock:
            data, self._held = b"".join(self._held), None
            self._file.write(data)
            self._file.fsync()
            self._dirty = False

    def _group_commit(self) -> None:
        while not self._closed.wait(COMMIT_INTERVAL):
            if self._dirty:
                self._dirty = False
                # A failure here resurfaces at the next seal, which fsyncs under the lock
                # (a lost evidence directory or server link included).
                with contextlib.suppress(OSError, EvidenceLostError):
                    self._file.fsync()

    def close(self) -> None:
        self._closed.set()
        self._committer.join()
        with self._lock:
            self._file.fsync()
            self._file.close()
