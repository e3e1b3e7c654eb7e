"""Checking a host file before and while it is opened for a copy: the copy engine's
defences against a host that changes under it.

Only regular files are read; the source is ``lstat``-ed (by its last component in the
directory a walk listed it in, when there is one, so a directory on the way swapped for
a symlink is refused), opened read-only with ``O_NOFOLLOW`` and ``O_NONBLOCK``
(``source.open_source``), and the descriptor is checked to be the very file that was
``lstat``-ed before a byte is read. Anything else becomes one ``skipped`` or ``error``
record; the copy itself is ``copybytes``'."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Any

from manifests import longpath

from .batchcopy import Batch
from .copybytes import ByteCopier
from .copyrequest import CopyRequest
from .pathmap import describe
from .source import open_source
from .stat_record import kind_of, stat_fields
from .walk import DirId


class SourceOpener(ByteCopier):
    """Opens a host file for a copy only once it is checked to be what is to be copied."""

    max_file_size: int | None

    def _open_listed(
        self, directory: bytes, parent_id: DirId, sources: list[bytes], collector: str
    ) -> int | None:
        """The directory a walk listed ``sources`` in, opened (at any depth) and checked
        to be that very directory; None, with an error journaled for each source, if not."""
        try:
            dir_fd = longpath.open_dir(directory or b".")
        except OSError as e:
            reason = f"its directory cannot be opened: {e.strerror}; not read"
        else:
            st = os.fstat(dir_fd)
            if (st.st_dev, st.st_ino) == parent_id:
                return dir_fd
            os.close(dir_fd)
            reason = "its directory was replaced since it was listed; not read"
        for source in sources:
            self.record_error(collector, source, reason)
        return None

    def _preserve_at(self, req: CopyRequest) -> dict[str, Any] | None:
        """``preserve`` proper, once the directory (if any) is open."""
        before = self._examine(req)
        if before is None:
            return None
        if self._over_cap(req, before):
            return None
        return self._open_and_copy(req, before)

    def _over_cap(self, req: CopyRequest, st: os.stat_result) -> bool:
        """Is the whole file (from ``req.offset``) over ``--max-file-size``? Journaled."""
        cap = self.max_file_size
        if cap is None or st.st_size - req.offset <= cap or req.limit is not None:
            return False
        self.record_error(
            req.collector,
            req.source,
            f"larger than --max-file-size ({st.st_size} > {cap} bytes)",
            stat=stat_fields(st),
        )
        return True

    def _examine(self, req: CopyRequest) -> os.stat_result | None:
        """The ``lstat`` of a regular file to copy; anything else is journaled (skipped,
        or an error) and gives None."""
        source, collector, name = req.source, req.collector, req.opened_as
        try:
            before = os.stat(name) if req.magic_link else os.lstat(name, dir_fd=req.dir_fd)
        except FileNotFoundError:
            self.record_error(collector, source, "vanished before it could be read")
            return None
        except OSError as e:
            self.record_error(collector, source, f"cannot stat: {e.strerror}")
            return None
        if stat.S_ISREG(before.st_mode):
            return before
        self.skip_not_regular(collector, source, before, name, req.dir_fd)
        return None

    def skip_not_regular(
        self,
        collector: str,
        source: bytes,
        st: os.stat_result,
        name: bytes | None = None,
        dir_fd: int | None = None,
    ) -> None:
        """Journal ``source``, which ``st`` shows is no regular file, as skipped: its kind,
        its stat and, for a symlink, its target (``name`` in ``dir_fd``, when given)."""
        extra: dict[str, Any] = {}
        if stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(OSError):
                extra["target"] = describe(os.readlink(name or source, dir_fd=dir_fd))
        self.record_skip(
            collector,
            source,
            f"{kind_of(st.st_mode)}: not read",
            stat=stat_fields(st),
            **extra,
        )

    def _open_and_copy(
        self, req: CopyRequest, before: os.stat_result, batch: Batch | None = None
    ) -> dict[str, Any] | None:
        """Open the file ``before`` describes and copy it (into ``batch`` when given)."""
        source, collector = req.source, req.collector
        try:
            fd = open_source(req.opened_as, follow=req.magic_link, dir_fd=req.dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:  # swapped for a symlink after lstat
                self.record_skip(collector, source, "symlink: not followed")
            elif e.errno == errno.ENOENT:
                self.record_error(collector, source, "vanished before it could be read")
            else:
                self.record_error(
                    collector, source, f"cannot open: {e.strerror}", stat=stat_fields(before)
                )
            return None
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (
                before.st_dev,
                before.st_ino,
            ) or not stat.S_ISREG(opened.st_mode):
                self.record_error(
                    collector,
                    source,
                    "source was replaced between lstat and open; not read",
                    stat=stat_fields(opened),
                )
                return None
            return self._copy_checked(fd, opened, req, batch)
        finally:
            os.close(fd)
