"""One file the copy engine is asked to copy, as one value: the steps of a copy (check the
source, open it, reserve room, store it, or do so in a batch) pass it on whole instead of
a dozen positional parameters that must stay in the same order at every call."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """Which host file, where it is stored, which part of it and what the record says.

    ``source`` is the host path as journaled. With ``dir_fd`` the file is opened as
    ``name`` relative to that directory (a walk's listed directory, checked to be the one
    listed); otherwise by ``source`` itself. ``offset``/``limit`` copy a byte range (by
    default the whole file as it was at open); ``magic_link`` follows a kernel magic link
    such as ``/proc/PID/exe`` (``CopyEngine.preserve``); ``fields`` are added to the
    artifact record."""

    source: bytes
    rel: str
    collector: str
    limit: int | None = None
    offset: int = 0
    magic_link: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    dir_fd: int | None = None
    name: bytes = b""

    @property
    def opened_as(self) -> bytes:
        """The path handed to ``lstat``/``open`` (relative to ``dir_fd`` when given)."""
        return self.name if self.dir_fd is not None else self.source

    def at(self, dir_fd: int) -> CopyRequest:
        """This request opened by its last component in the directory ``dir_fd``."""
        return replace(self, dir_fd=dir_fd, name=os.path.basename(self.source), magic_link=False)

    def stored_as(self, rel: str) -> CopyRequest:
        """This request with the stored path claimed for it."""
        return replace(self, rel=rel)
