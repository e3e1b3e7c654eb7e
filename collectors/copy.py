"""The copy engine: read a source once, hash and store the same bytes in one pass.

Every collector stores bytes through here, so the rules live in one place: sources are
opened read-only with ``O_NOFOLLOW`` (and ``O_NOATIME`` where the kernel allows), only
regular files are read, the descriptor is checked to be the file that was ``lstat``-ed,
at most the size seen at open is copied (a growing log is cut at a recorded offset), and
memory stays bounded by one chunk per worker. Each result becomes exactly one journal
record: ``artifact``, ``skipped`` or ``error``.

This module is what collectors call: one copy now (``preserve``) or in the background
(``submit``, ``submit_listed``). The checks on the host file are ``copysource``'s, the
copy proper ``copybytes``', a directory's small files together ``batchcopy``'s.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from typing import Any

from manifests.errors import EvidenceLostError
from manifests.writer import EvidenceWriter

from .batchcopy import BATCH_FILES, copy_batch
from .copyqueue import CopyQueue
from .copyrequest import CopyRequest
from .copysource import SourceOpener
from .walk import DirId


class CopyEngine(SourceOpener):
    """Stores files and generated data under an evidence directory, journalling each."""

    def __init__(
        self, writer: EvidenceWriter, max_file_size: int | None = None, workers: int | None = None
    ) -> None:
        super().__init__(writer)
        self.max_file_size = max_file_size
        # One worker a core: a small file's copy is a dozen system calls between which
        # the workers hand the GIL to each other; four on two cores spent more on that
        # hand-off than they gained (bench/RESULTS.md, issue 14).
        self._work = CopyQueue(workers or max(2, os.cpu_count() or 2))
        # Set when the evidence directory vanished under a background copy.
        self.lost: EvidenceLostError | None = None

    # -- copying files ---------------------------------------------------------------

    def submit(self, source: bytes, rel: str, collector: str, **fields: Any) -> None:
        """Copy in the background; ``drain`` waits for everything submitted."""
        if self.stopped.is_set() or self._skipped_when_full(collector, source, None):
            return
        self._queue(collector, source, self.preserve, source, rel, collector, **fields)

    def submit_listed(
        self,
        entries: Iterable[tuple[bytes, DirId]],
        dest: Callable[[bytes], str],
        collector: str,
    ) -> None:
        """Copy a walk's files (path, directory listed in) to ``dest(path)`` in the
        background, those of one directory in batches (``batchcopy``)."""
        group: list[tuple[bytes, str]] = []
        parent: DirId | None = None
        for path, parent_id in entries:
            if self.stopped.is_set():  # interrupted (a full drive is not: each file is skipped)
                return
            if group and (parent_id != parent or len(group) >= BATCH_FILES):
                self._queue(collector, group[0][0], copy_batch, self, group, collector, parent)
                group = []
            parent = parent_id
            group.append((path, dest(path)))
        if group and not self.stopped.is_set():
            self._queue(collector, group[0][0], copy_batch, self, group, collector, parent)

    def _queue(
        self, collector: str, source: bytes, work: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        self._work.put(self._guarded, collector, source, work, *args, **kw)

    def _guarded(
        self, collector: str, source: bytes, work: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        """A background copy must never fail silently: any surprise becomes an error record."""
        try:
            work(*args, **kw)
        except EvidenceLostError as e:
            self.lost = self.lost or e
            self.stopped.set()
        except Exception as e:
            self.record_error(
                collector, source, f"internal error while copying: {type(e).__name__}: {e}"
            )

    def drain(self) -> None:
        """Wait for every copy submitted so far."""
        self._work.drain()

    def raise_if_lost(self) -> None:
        """Re-raise, in the collector's thread, a loss a background copy ran into."""
        if self.lost is not None:
            raise self.lost

    def shutdown(self) -> None:
        self._work.shutdown()

    def preserve_open(
        self, fd: int, source: bytes, rel: str, collector: str, **fields: Any
    ) -> dict[str, Any] | None:
        """Copy the file open at ``fd`` (by ``source.open_seen``, say), from its start:
        for a collector that judged the file by this descriptor, so that what it checked
        (the owner, the size) is what is copied, whatever is renamed over ``source``
        meanwhile. Returns its artifact record, or None if skipped or failed."""
        if self.stopped.is_set() or self._skipped_when_full(collector, source, None):
            return None
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            self.skip_not_regular(collector, source, opened)
            return None
        req = CopyRequest(source, rel, collector, fields=fields)
        if self._over_cap(req, opened):
            return None
        os.lseek(fd, 0, os.SEEK_SET)
        return self._copy_checked(fd, opened, req)

    def preserve(
        self,
        source: bytes,
        rel: str,
        collector: str,
        limit: int | None = None,
        offset: int = 0,
        magic_link: bool = False,
        parent_id: tuple[int, int] | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """Copy one file; returns its artifact record, or None if skipped or failed.

        ``offset``/``limit`` copy a byte range (log increments); by default the whole
        file as it was at open.

        ``magic_link=True`` is for kernel "magic" links such as ``/proc/PID/exe``, which
        reach a file even after it was deleted or replaced on disk: the link is followed
        (``stat``, and ``open`` without ``O_NOFOLLOW``), and the descriptor must still be
        the regular file that ``stat`` saw. Never pass it for paths an attacker can plant.

        ``parent_id`` is the (st_dev, st_ino) of the directory a walk listed ``source``
        in: the file is then opened in that very directory, so a directory on the way
        swapped for a symlink since the walk (to /etc, say) is refused, not followed."""
        if self.stopped.is_set() or self._skipped_when_full(collector, source, None):
            return None
        req = CopyRequest(source, rel, collector, limit, offset, magic_link, fields)
        if parent_id is None:
            return self._preserve_at(req)
        dir_fd = self._open_listed(os.path.dirname(source), parent_id, [source], collector)
        if dir_fd is None:
            return None
        try:
            return self._preserve_at(req.at(dir_fd))
        finally:
            os.close(dir_fd)
