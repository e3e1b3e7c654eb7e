"""What refuses a collection before anything is started: no place for the evidence, one
that cannot be written, a ``--path`` that does not exist, an output inside what is
collected (exit 2 each, with what to do instead)."""

from __future__ import annotations

import os
from pathlib import Path

from manifests.errors import UsageError

from ..kit import EVIDENCE, running_kit
from ..outputdisk import unwritable_reason
from ..sinks import SftpTarget


def checked_output(output: Path | SftpTarget | None) -> Path | SftpTarget:
    """``-o``, or the kit's own evidence folder; refused (exit 2) where evidence cannot
    be written, before anything is started."""
    kit = running_kit()
    if output is None and kit is not None:
        output = kit / EVIDENCE
    if output is None:
        raise UsageError(
            "say where to put the evidence, e.g. -o /media/kit/evidence "
            "(a drive of the kit, not the host's own disk)"
        )
    unwritable = unwritable_reason(output) if isinstance(output, Path) else None
    if unwritable:
        raise UsageError(
            f"cannot write evidence under {output}: {unwritable}",
            hint="give -o a writable directory on the kit's drive (is it mounted read-write?)",
        )
    return output


def checked_paths(paths: tuple[str, ...]) -> list[bytes]:
    """The ``--path`` trees, absolute; one that does not exist is refused (exit 2)."""
    raw_paths = [os.fsencode(os.path.abspath(p)) for p in paths]
    missing = [p for p in raw_paths if not os.path.lexists(p)]
    if missing:
        absent = ", ".join(os.fsdecode(p) for p in missing)
        raise UsageError(
            f"--path {absent}: no such file or directory", hint="check the path and run again"
        )
    return raw_paths


def inside(child: Path, parent: bytes) -> bool:
    """Would ``child`` land in ``parent``? By path (after symlinks) and by identity: an
    existing ancestor of ``child`` that is the same directory as ``parent`` (a bind
    mount or another path to it) counts too."""
    parent_real = os.path.realpath(parent)
    child_real = os.path.realpath(os.fsencode(child))
    if child_real == parent_real or child_real.startswith(parent_real.rstrip(b"/") + b"/"):
        return True
    try:
        target = os.stat(parent)
    except OSError:
        return False
    node = child_real
    while True:
        try:
            st = os.stat(node)
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                return True
        except OSError:
            pass
        if node == os.path.dirname(node):
            return False
        node = os.path.dirname(node)
