"""One file the copy engine is asked to copy, as one value: the steps of a copy (check the
source, open it, reserve room, store it, or do so in a batch) pass it on whole instead of
a dozen positional parameters that must stay in the same order at every call."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    # Made directly rather than by ``dataclasses.replace``, which costs 3 us a call in
    # introspection: twice for every small file of a tree.

    def at(self, dir_fd: int) -> CopyRequest:
        """This request opened by its last component in the directory ``dir_fd``."""
        name = self.source.rpartition(b"/")[2]
        return CopyRequest(
            self.source, self.rel, self.collector, self.limit, self.offset, False,
            self.fields, dir_fd, name,
        )  # fmt: skip

    def stored_as(self, rel: str) -> CopyRequest:
        """This request with the stored path claimed for it."""
        return CopyRequest(
            self.source, rel, self.collector, self.limit, self.offset, self.magic_link,
            self.fields, self.dir_fd, self.name,
        )  # fmt: skip
