"""The evidence writer: the one object that creates, appends to, seals and closes an
evidence directory.

Collection, the log watch, ``custody`` and ``release`` all write through it, and it writes
only through a ``Sink`` (``manifests.sink``), so the evidence format lives here and a new
kind of storage (SFTP, an object store) is a new sink, not an edit elsewhere.

A directory's life: ``create`` (a new directory, ``signer.pub``, the journal), then
``append`` records and ``create_file`` artifacts, ``seal`` after each stage, and ``close``:
the run log is journaled, ``SHA256SUMS`` and the signed ``manifest.json`` are written and a
last seal covers everything. ``continue_custody`` reopens a verified directory to append a
transfer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import canonical, layout
from .digest import CHUNK, ZERO_HASH, sha256_bytes
from .errors import JournalChangedError
from .fstype import FileSystem
from .journal import Journal
from .journal_reader import records_of
from .localdir import CreateDir
from .signing import Signer, public_key_pem
from .sink import LocalDirSink, LocalFile, NotRegularFileError, Sink, SinkFile
from .sums import sums_line

FORMAT = "preserve-evidence/1"


class EvidenceWriter:
    """Writes one evidence directory. Thread-safe where the journal is (``append``)."""

    def __init__(self, sink: Sink, journal: Journal) -> None:
        self.sink = sink
        self.journal = journal
        self._lock = threading.Lock()
        self._discarded_in: set[str] = set()

    # -- opening -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        output: str | os.PathLike[str],
        name: str,
        signer: Signer,
        open_sink: Callable[[str], Sink] | None = None,
    ) -> EvidenceWriter:
        """A new evidence directory ``OUTPUT/<name>`` (``-2``, ``-3``... if taken);
        ``open_sink(name)`` makes it elsewhere (an SFTP server) instead."""
        sink = open_sink(name) if open_sink else LocalDirSink.create_new(output, name)
        _write_whole(sink.create(layout.SIGNER_PUB), public_key_pem(signer.public_key))
        journal_file = sink.create(layout.JOURNAL, append=True)
        sink.fsync_root()
        journal = Journal(journal_file, 0, ZERO_HASH, signer, sink.sync, cls._path(sink))
        return cls(sink, journal)

    @classmethod
    def continue_custody(
        cls,
        evidence_dir: str | os.PathLike[str],
        verified: tuple[int, str, int],
        signer: Signer,
        tail: str = layout.JOURNAL,
    ) -> EvidenceWriter:
        """Reopen a verified evidence directory to append (a transfer, a release).

        ``verified`` is (records, chain head, bytes of ``tail``) as verification read
        them, ``tail`` the file the chain ends in (``custody.jsonl``, or its continuation
        after a lost link); if it has changed since (another custody run, a writer still
        running), nothing is appended."""
        records, head, size = verified
        sink = LocalDirSink.open_existing(evidence_dir)
        try:
            file = sink.append_existing(tail)
            if not _ends_with(file, head, size):
                file.close()
                raise JournalChangedError(
                    f"{tail} changed while it was being verified, so nothing was recorded"
                )
        except BaseException:
            sink.close()
            raise
        journal = Journal(file, records, head, signer, sink.sync, Path(sink.location) / tail)
        return cls(sink, journal)

    @staticmethod
    def _path(sink: Sink) -> Path:
        return Path(sink.location) / layout.JOURNAL

    @property
    def root(self) -> Path:
        """Where the directory is, for people and for commands that write into it."""
        return Path(self.sink.location)

    # -- records and artifacts -----------------------------------------------------

    def append(self, type_: str, **fields: Any) -> dict[str, Any]:
        return self.journal.append(type_, **fields)

    def seal(
        self, reason: str, signer: Signer | None = None, journal_only: bool = False
    ) -> dict[str, Any]:
        return self.journal.seal(reason, signer, journal_only)

    def create_file(self, rel: str) -> SinkFile:
        """A new artifact, created exclusively under its partial name (``layout``); once
        its record is journaled, ``commit`` gives it its name, or ``discard`` removes it.

        A sink that cannot rename (an SFTP drop-box, ``renames`` False) gets the file
        under its final name, announced first by a ``begin`` record: ``verify`` then
        names a copy cut short by a killed run from that record."""
        if not getattr(self.sink, "renames", True):
            self.append("begin", path=rel)
            return self.sink.create(rel)
        return self.sink.create(layout.partial_name(rel))

    @property
    def writes_in_order(self) -> bool:
        """Can files be announced in a batch and written under their final names? Only
        where a journal line is in the file before a file created after it: a local
        drive (one kernel: ``write`` returns, then ``open``). Over SFTP the journal's
        bytes may still be on their way; there each artifact takes ``create_file``."""
        return isinstance(self.sink, LocalDirSink)

    def announce(self, rels: list[str]) -> None:
        """One ``begin`` record naming artifacts about to be written under their final
        names (``create_announced``): ``verify`` names any of them without an
        ``artifact`` record after it as an incomplete copy. A batch of small files so
        costs one record and no rename, instead of a ``%part`` name and a rename each."""
        self.append("begin", paths=rels)

    def create_announced(self, rel: str) -> SinkFile:
        """An artifact named by ``announce``: created exclusively under its final name,
        read-only from the start; ``discard_announced`` removes it if the copy fails."""
        if not isinstance(self.sink, LocalDirSink):
            raise TypeError("only a local drive writes announced files (writes_in_order)")
        return self.sink.create_read_only(rel)

    def announced_dir(self, parent: str) -> contextlib.AbstractContextManager[CreateDir]:
        """Where ``create_announced`` creates the files of directory ``parent``, for the C
        copy of small files."""
        if not isinstance(self.sink, LocalDirSink):
            raise TypeError("only a local drive writes announced files (writes_in_order)")
        return self.sink.read_only_dir(parent)

    def discard_announced(self, rel: str) -> None:
        self.sink.remove(rel)
        with self._lock:
            self._discarded_in.add(rel.rpartition("/")[0])

    def commit(self, rel: str) -> None:
        if getattr(self.sink, "renames", True):
            self.sink.rename(layout.partial_name(rel), rel)

    def discard(self, rel: str) -> None:
        """Remove a partial artifact that will not be journaled; the directories made for
        it are removed at ``close`` if nothing else was stored there. Where nothing can
        be removed, a ``discarded`` record says the file left in place is no evidence."""
        if not getattr(self.sink, "renames", True):
            self.append("discarded", path=rel)
            return
        self.sink.remove(layout.partial_name(rel))
        with self._lock:
            self._discarded_in.add(rel.rpartition("/")[0])

    def store_artifact(self, rel: str, data: bytes) -> str:
        """Store bytes the tool produced itself as an artifact (partial name first; the
        caller journals it and commits); returns their SHA-256."""
        _write_whole(self.create_file(rel), data)
        return sha256_bytes(data)

    def store_bytes(self, rel: str, data: bytes) -> str:
        """Write one of the directory's own files (``SHA256SUMS``, the manifest)."""
        _write_whole(self.sink.create(rel), data)
        return sha256_bytes(data)

    def hash_stored(self, rel: str) -> tuple[str, int]:
        """SHA-256 and size of a stored file (one a host command wrote); made read-only."""
        fd = self.sink.open_read(rel)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotRegularFileError(rel)
            h, size = hashlib.sha256(), 0
            while chunk := os.read(fd, CHUNK):
                h.update(chunk)
                size += len(chunk)
            with contextlib.suppress(OSError):  # FAT cannot; best effort, as for copies
                os.fchmod(fd, 0o444)
            return h.hexdigest(), size
        finally:
            os.close(fd)

    def local_path(self, rel: str) -> Path:
        """A path for a host command that must write its output itself (``wevtutil epl``);
        its directory is made. Only a local sink has one."""
        directory = rel.rpartition("/")[0]
        if directory:
            self.sink.makedirs(directory)
        return self.root / rel

    def free_bytes(self) -> int | None:
        return self.sink.free_bytes()

    @property
    def file_system(self) -> FileSystem:
        """What the output can store: a file size limit, holes or not."""
        return self.sink.file_system

    # -- closing -------------------------------------------------------------------

    def close(
        self,
        status: str,
        counts: dict[str, int],
        manifest: dict[str, Any],
        **end_fields: Any,
    ) -> str:
        """Finish the directory: ``SHA256SUMS``, the ``end`` record (with ``end_fields``:
        why the run stopped early), the last seal and the signed manifest. The run log must
        already be journaled. Returns the chain head."""
        self.sink.remove_empty_dirs(self._discarded_in, stop_at=layout.ARTIFACTS)
        sums_hash, entries = self._write_sums()
        self.append("sums", path=layout.SUMS, sha256=sums_hash, entries=entries)
        self.append("end", status=status, counts=counts, **end_fields)
        final = self.seal("end")
        self._write_manifest(final, {**manifest, "format": FORMAT, "sums_sha256": sums_hash})
        return self.finish()

    def finish(self) -> str:
        """Close the journal after a last flush; returns the chain head."""
        self.journal.close()
        self.sink.sync()
        self.sink.close()
        return self.journal.head

    def abandon(self) -> None:
        """Let go of a directory that was lost: nothing more can reach it."""
        with contextlib.suppress(OSError):
            self.journal.close()
        self.sink.close()

    def _write_sums(self) -> tuple[str, int]:
        """``SHA256SUMS`` of the journal's artifact records, in journal order (``sha256sum
        -c`` does not need sorted lines), from memory when the journal kept them all, else
        read back from the journal. Returns (SHA-256, lines)."""
        out = self.sink.create(layout.SUMS)
        digest, size, entries = hashlib.sha256(), 0, 0
        kept = self.journal.kept_sums()
        try:
            for piece, lines in [kept] if kept is not None else self._sums_read_back():
                out.write(piece)
                digest.update(piece)
                size += len(piece)
                entries += lines
            out.finish(size)
        finally:
            out.close()
        return digest.hexdigest(), entries

    def _sums_read_back(self) -> Iterator[tuple[bytes, int]]:
        """``SHA256SUMS`` in pieces (bytes, lines) from the journal's own artifact records,
        read back through the one parser, for a journal too large to have kept them in
        memory (a million files would cost 200 MB) or continued from an earlier run."""
        pending, lines = bytearray(), 0
        with os.fdopen(self.sink.open_read(layout.JOURNAL), "rb") as stream:
            last, head = self.journal.next_seq - 1, self.journal.head
            for record in records_of(stream, layout.JOURNAL, last, head, own=True):
                if record.get("type") != "artifact":
                    continue
                pending += sums_line(record["path"], record["sha256"])
                lines += 1
                if len(pending) >= CHUNK:
                    yield bytes(pending), lines
                    pending.clear()
                    lines = 0
        yield bytes(pending), lines

    def _write_manifest(self, final_seal: dict[str, Any], fields: dict[str, Any]) -> None:
        """Signed summary; the raw Ed25519 signature over the file's exact bytes lets
        ``openssl pkeyutl -verify -rawin`` check it with ``signer.pub`` alone."""
        manifest = {
            **fields,
            "chain": {"seq": final_seal["seq"], "head": sha256_bytes(canonical.dumps(final_seal))},
            "signer": self.journal.signer.fingerprint,
        }
        data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        _write_whole(self.sink.create(layout.MANIFEST), data)
        _write_whole(self.sink.create(layout.MANIFEST_SIG), self.journal.signer.sign(data))


def _write_whole(file: SinkFile, data: bytes) -> None:
    try:
        file.write(data)
        file.finish(len(data))
    finally:
        file.close()


def _ends_with(file: LocalFile, head: str, expected_size: int) -> bool:
    """Is the journal behind ``file`` still ``expected_size`` bytes, ending with the line
    whose hash is ``head``?"""
    size = os.fstat(file.fd).st_size
    if size != expected_size:
        return False
    if size == 0:
        return head == ZERO_HASH
    span = min(size, 16 * 1024 * 1024)
    tail = os.pread(file.fd, span, size - span)
    if not tail.endswith(b"\n"):
        return False
    last = tail[:-1].rpartition(b"\n")[2]
    return sha256_bytes(last) == head
