"""A batch's small files copied in C (``_smallcopy``), where it was built.

A small file through the Python path costs about a dozen system calls, and each hands
the interpreter lock to the other copy worker and back; in C it is one call with the
lock released. It opens the source as ``source.open_source`` does, in the directory the
walk listed it in, and copies it only when it is still the regular file the walk's
``lstat`` saw and fits the room left: anything else comes back as None, with nothing
created, and the Python path copies the file again and journals what it finds. The
record is made by the same code either way (``copybytes.artifact_fields``).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from manifests.localdir import CreateDir

from .source import open_flags

try:
    from . import _smallcopy  # type: ignore[attr-defined]
except ImportError:  # built without a compiler: every file takes the Python path
    _smallcopy = None

AVAILABLE = _smallcopy is not None
_READ_FLAGS, _NOATIME = open_flags()


class Copied(NamedTuple):
    opened: os.stat_result  # the source as opened (fstat of the descriptor read)
    size: int  # bytes stored
    sha256: str
    size_after: int  # the source's size and mtime once read
    mtime_ns_after: int


def copy_small(
    dir_fd: int, name: bytes, before: os.stat_result, room: int, out: CreateDir, out_name: bytes
) -> Copied | None:
    """Copy ``name`` in ``dir_fd`` (``before`` is its ``lstat``), if it is at most
    ``room`` bytes at open, to ``out_name`` in ``out``; None, with nothing created, when
    not."""
    assert _smallcopy is not None
    got = _smallcopy.copy(
        dir_fd,
        name,
        _READ_FLAGS,
        _NOATIME,
        before.st_dev,
        before.st_ino,
        room,
        out.dir_fd,
        out_name,
        out.flags,
        out.chmod,
    )
    if got is None:
        return None
    fields, size, sha256, size_after, mtime_ns_after = got
    return Copied(os.stat_result(fields), size, sha256, size_after, mtime_ns_after)
