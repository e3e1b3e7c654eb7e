"""``timeline``: a bodyfile of every file on the host's local file systems, the scoping
tool for "what changed around the moment the implant landed".

One line per file in The Sleuth Kit 3.x bodyfile format
(``MD5|name|inode|mode_as_string|UID|GID|size|atime|mtime|ctime|crtime``), which
``mactime -b`` turns into a timeline. Each file costs one stat, ``statx(2)`` relative to
its directory's descriptor and never following a symlink (``bodywalk``); crtime is the
birth time where the file system keeps one, 0 elsewhere. The walk runs in a child
process (``forked``), so it takes the machine's other core while the rest of the run
goes on (the orchestrator runs this collector alongside its stage). The listing is ONE
artifact streamed to the drive in bounded memory (``artifacts/timeline/bodyfile.txt``)
with one journal record, however many files the host has; walk errors are counted and
the first few recorded. An entry that is listed and gone before its stat (a temporary
file) is counted, not an error: nothing that still exists was missed.

Which mounts are walked (``plan``): local disk file systems and the memory ones where
attackers stage (tmpfs: ``/dev/shm``, ``/run``, often ``/tmp``). Pseudo file systems
(proc, sysfs, cgroup, devpts...), network ones (nfs, cifs, sshfs...), anything unknown
and second mounts of a file system already walked (bind mounts) are not entered, each
recorded as a ``skipped`` record; so is the evidence directory itself. An overlay is
walked only as the root (a container's own view): other overlays are other containers'
file systems, collected from their state directories instead."""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import ClassVar

from ._common import LINUX
from .base import Collector, Stage
from .bodywalk import BodyWalker, body_line, body_name, lister, mode_string
from .context import CollectContext
from .forked import Send, run_forked
from .triagegate import triage_settings
from .walk import DirId

if LINUX:
    from . import _linux

BODYFILE = "artifacts/timeline/bodyfile.txt"
ERRORS_RECORDED = 20  # walk errors journaled one by one; the rest are counted
_LOCAL = "ext2 ext3 ext4 xfs btrfs zfs f2fs jfs reiserfs bcachefs nilfs2 vfat msdos exfat"
_MEMORY = "ntfs ntfs3 fuseblk hfsplus udf iso9660 squashfs erofs tmpfs devtmpfs ramfs"
LOCAL_TYPES = frozenset(f"{_LOCAL} {_MEMORY}".split(" "))
__all__ = ["TimelineCollector", "body_name", "mode_string", "plan"]
# What the walk's child process sends: bodyfile lines, a walk error (errno, path), and
# at the end how many entries it listed, had a birth time, and vanished before their stat.
_LINES, _ERROR, _COUNTS = b"B", b"E", b"D"
_ERRNO = struct.Struct("=i")
_TOTALS = struct.Struct("=QQQ")


@dataclass(frozen=True)
class Plan:
    """What the walk from ``/`` enters: everything but these devices and directories."""

    skip_devs: frozenset[int]
    skip_dirs: frozenset[DirId]
    skipped: tuple[tuple[str, str, str], ...]  # (mount point, fs type, why)


def plan(mounts: list[dict[str, object]]) -> Plan:
    """Decide, from ``/proc/self/mountinfo`` rows, which mounts the walk enters."""
    skip_devs: set[int] = set()
    skip_dirs: set[DirId] = set()
    skipped: list[tuple[str, str, str]] = []
    walked_devs: set[str] = set()
    skipped_points: list[str] = []
    for m in mounts:
        point, fstype, dev = str(m["mountpoint"]), str(m["fstype"]), str(m["dev"])
        major, _, minor = dev.partition(":")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in skipped_points):
            skipped.append((point, fstype, "inside a file system that is not walked"))
            continue
        local = fstype in LOCAL_TYPES or (fstype == "overlay" and point == "/")
        if not local:
            skip_devs.add(os.makedev(int(major), int(minor)))
            skipped_points.append(point)
            skipped.append((point, fstype, "network, pseudo or unknown file system: not walked"))
        elif dev in walked_devs:
            try:
                st = os.lstat(point)
            except OSError:
                continue
            skip_dirs.add((st.st_dev, st.st_ino))
            skipped.append((point, fstype, "another mount of a file system already walked"))
        else:
            walked_devs.add(dev)
    return Plan(frozenset(skip_devs), frozenset(skip_dirs), tuple(skipped))


class TimelineCollector(Collector):
    name: ClassVar[str] = "timeline"
    stage: ClassVar[Stage] = Stage.SLOW
    # First, and alongside the rest of the stage: the walk takes the other core, and it
    # sees the host's times before the other collectors of the stage read the files.
    order: ClassVar[int] = 1
    alongside: ClassVar[bool] = True
    description: ClassVar[str] = "bodyfile (mactime) of every file on local file systems"
    top: bytes = b"/"  # tests walk a smaller tree

    def collect(self, ctx: CollectContext) -> None:
        if triage_settings(ctx, self.name, "Timeline") is None:
            return
        mounts = _linux.mountinfo() if LINUX else []
        p = plan(mounts)
        for point, fstype, why in p.skipped:
            ctx.engine.record_skip(self.name, os.fsencode(point), why, fstype=fstype)
        out_st = os.stat(ctx.root)
        exclude = p.skip_dirs | {(out_st.st_dev, out_st.st_ino)}
        errors, totals = 0, (0, 0, 0)

        def work(send: Send) -> None:
            walker = BodyWalker(
                lambda chunk: send(_LINES, chunk),
                lambda path, e: send(_ERROR, _ERRNO.pack(e.errno or 0) + path),
                exclude=exclude,
                exclude_devs=p.skip_devs,
                stopped=stopped,
            )
            walker.walk(self.top)
            send(_COUNTS, _TOTALS.pack(walker.entries, walker.births, walker.vanished))

        def stopped() -> bool:  # interrupted, or nothing more can be stored
            return ctx.engine.stopped.is_set() or ctx.engine.full.is_set()

        started = time.monotonic()
        with ctx.engine.open_stream(BODYFILE, self.name, kind="bodyfile") as out:

            def on_frame(kind: bytes, payload: bytes) -> None:
                nonlocal errors, totals
                if kind == _LINES:
                    out.write(payload)
                elif kind == _ERROR:
                    errors += 1
                    if errors <= ERRORS_RECORDED:
                        (number,) = _ERRNO.unpack_from(payload)
                        path = payload[_ERRNO.size :]
                        ctx.error(self.name, f"cannot examine: {os.strerror(number)}", path)
                elif kind == _COUNTS:
                    totals = _TOTALS.unpack(payload)

            out.write(body_line(self.top, os.lstat(self.top)))
            finished = run_forked(work, on_frame, stopped)
        seconds = time.monotonic() - started
        if not finished:  # the partial bodyfile was discarded with its stream
            ctx.summary.add("Timeline", f"stopped after {seconds:.0f} s: no bodyfile stored")
            return
        count, births, vanished = totals
        ctx.journal.append(
            "event",
            event="timeline",
            collector=self.name,
            lister=lister(),
            entries=count,
            with_birth_time=births,
            errors=errors,
            vanished=vanished,
            mounts_skipped=len(p.skipped),
            milliseconds=int(seconds * 1000),
        )
        ctx.summary.add(
            "Timeline",
            f"{count} entries ({births} with birth time), {len(p.skipped)} mounts skipped, "
            f"{errors} errors, {vanished} gone before their stat, {seconds:.0f} s",
        )
