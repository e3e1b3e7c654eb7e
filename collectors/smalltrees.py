"""List, hash and copy a few small trees within caps: what the ``boot``, ``mail`` and
``browsers`` collectors share. Each entry of a tree is one line of a JSON Lines listing
(type, size, mode, owner, times, a symlink's target, and the SHA-256 of a regular file);
the collector decides which files are copied, and ``Caps`` holds what a run may still
copy. Nothing is followed: the walk lstat()s, a file is opened with ``O_NOFOLLOW`` and
must be the inode the walk saw (collectors/source.py), and a copy is opened in the very
directory the walk listed it in (``parent_id``)."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from manifests.treewalk import Entry

from .context import CollectContext
from .homes import steered
from .pathmap import stored_relpath
from .staging import row, scan
from .walk import walk_stats

MIB = 1024 * 1024


@dataclass
class Caps:
    """Bytes of one file that may be copied, bytes the run may still copy, and the
    largest file that is hashed (a larger one is listed with ``not_hashed``)."""

    per_file: int
    left: int
    hash_max: int


def entries(ctx: CollectContext, collector: str, top: bytes, limit: int) -> Iterator[Entry]:
    """Every non-directory under ``top`` (the evidence directory never), at most
    ``limit``; an unreadable directory is an error record, the rest a skipped one."""

    def on_error(path: bytes, error: OSError) -> None:
        if error.errno == errno.ENOENT:
            ctx.engine.record_skip(collector, path, "removed while it was being listed")
        else:
            ctx.error(collector, f"cannot list: {error.strerror}", path)

    out = os.stat(ctx.root)
    count = 0
    for entry in walk_stats(top, on_error, exclude=frozenset({(out.st_dev, out.st_ino)})):
        if entry.stat is None or entry.is_dir:
            continue
        count += 1
        if count > limit:
            ctx.engine.record_skip(
                collector, top, f"more than {limit} entries: the rest not listed"
            )
            return
        yield entry


def listed(entry: Entry, host: str, caps: Caps) -> dict[str, Any]:
    """The listing row of ``entry`` (``host``: its path on the host), with the SHA-256 of
    a regular file up to ``caps.hash_max``."""
    assert entry.stat is not None
    r = row(entry)
    r["path"] = host
    if stat.S_ISREG(entry.stat.st_mode):
        got = scan(entry.path, entry.stat, 0, caps.hash_max)
        r["sha256"] = got[0] if got else None
        if got is None:
            r["not_hashed"] = "changed or removed since it was listed"
        elif got[0] is None:
            r["not_hashed"] = f"larger than {caps.hash_max} bytes"
    return r


def copy(
    ctx: CollectContext, collector: str, entry: Entry, r: dict[str, Any], dest: str,
    caps: Caps, tail: bool = False,
) -> str | None:  # fmt: skip
    """Copy a regular file under ``dest`` within the caps (its first bytes, or with
    ``tail`` its last: the newest mail of a mailbox); the row says what was copied.
    Returns where it is stored, or None when a cap left it out."""
    assert entry.stat is not None
    size = entry.stat.st_size
    take = min(size, caps.per_file)
    if take > caps.left:
        r["copied"], r["not_copied"] = 0, "the run's total cap was reached"
        return None
    caps.left -= take
    r["copied"] = take
    fields: dict[str, Any] = {}
    if take < size:
        where = "last" if tail else "first"
        r["not_copied"] = f"only the {where} {take} bytes (the per-file cap)"
        fields = {"limit": take, "offset": size - take if tail else 0}
    rel = f"{dest}/{stored_relpath(os.fsencode(r['path']))}"
    ctx.engine.submit(entry.path, rel, collector, parent_id=entry.parent, **fields)
    return rel


def write_row(out: Any, r: dict[str, Any]) -> None:
    out.write(json.dumps(r, sort_keys=True).encode() + b"\n")


def host_path(root: bytes, path: bytes) -> str:
    """``path`` as the host names it (without a test's root)."""
    rel = path[len(root.rstrip(b"/")) :] if root != b"/" else path
    return os.fsdecode(rel or b"/")


def steered_away(ctx: CollectContext, collector: str, home: bytes, path: bytes) -> bool:
    """Is ``path`` in a user's ``home`` a symlink, or below one? Then it is recorded as
    not followed (``.aws`` -> ``/etc`` must not make us read ``/etc``), and True."""
    if steered(home, path) is None and not os.path.islink(path):
        return False
    ctx.engine.record_skip(
        collector, path, "it or a directory on the way is a symlink: not followed",
        target=os.fsdecode(os.path.realpath(path)),
    )  # fmt: skip
    return True
