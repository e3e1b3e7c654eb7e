"""``timeline``: a bodyfile of every file on the host's local file systems, the scoping
tool for "what changed around the moment the implant landed".

One line per file in The Sleuth Kit 3.x bodyfile format
(``MD5|name|inode|mode_as_string|UID|GID|size|atime|mtime|ctime|crtime``), which
``mactime -b`` turns into a timeline. Each file costs one stat, ``statx(2)`` relative to
its directory's descriptor and never following a symlink (``manifests.statx``), taken
by the one walker; crtime is the birth time where the file system keeps one, 0
elsewhere. The listing is ONE artifact streamed to the drive in bounded memory
(``artifacts/timeline/bodyfile.txt``) with one journal record, however many files the
host has; walk errors are counted and the first few recorded.

Which mounts are walked (``plan``): local disk file systems and the memory ones where
attackers stage (tmpfs: ``/dev/shm``, ``/run``, often ``/tmp``). Pseudo file systems
(proc, sysfs, cgroup, devpts...), network ones (nfs, cifs, sshfs...), anything unknown
and second mounts of a file system already walked (bind mounts) are not entered, each
recorded as a ``skipped`` record; so is the evidence directory itself. An overlay is
walked only as the root (a container's own view): other overlays are other containers'
file systems, collected from their state directories instead."""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from typing import ClassVar

from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .triagegate import triage_settings
from .walk import DirId, walk_stats

if LINUX:
    from . import _linux

BODYFILE = "artifacts/timeline/bodyfile.txt"
ERRORS_RECORDED = 20  # walk errors journaled one by one; the rest are counted
_LOCAL = "ext2 ext3 ext4 xfs btrfs zfs f2fs jfs reiserfs bcachefs nilfs2 vfat msdos exfat"
_MEMORY = "ntfs ntfs3 fuseblk hfsplus udf iso9660 squashfs erofs tmpfs devtmpfs ramfs"
LOCAL_TYPES = frozenset(f"{_LOCAL} {_MEMORY}".split(" "))
_SPECIAL = re.compile(rb"[\x00-\x1f\x7f|\\]")


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


def mode_string(mode: int) -> str:
    """As TSK writes it: name type, '/', meta type and permissions (``r/rrwxr-xr-x``)."""
    text = stat.filemode(mode)
    kind = "r" if text[0] == "-" else text[0]
    return f"{kind}/{kind}{text[1:]}"


def body_name(path: bytes) -> str:
    """The path, with '|', '\\', control bytes and bytes that are not UTF-8 written as
    ``\\xNN``, so that a hostile file name can neither add a field nor a line."""
    if _SPECIAL.search(path):
        path = _SPECIAL.sub(lambda m: b"\\x%02x" % m[0][0], path)
    return path.decode("utf-8", "backslashreplace")


def body_line(path: bytes, st: os.stat_result, birth_ns: int | None) -> str:
    crtime = birth_ns // 10**9 if birth_ns else 0
    return (
        f"0|{body_name(path)}|{st.st_ino}|{mode_string(st.st_mode)}|{st.st_uid}|{st.st_gid}|"
        f"{st.st_size}|{int(st.st_atime)}|{int(st.st_mtime)}|{int(st.st_ctime)}|{crtime}\n"
    )


class TimelineCollector(Collector):
    name: ClassVar[str] = "timeline"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 90  # after the logs and the files: it reads the most
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
        errors = 0

        def on_error(path: bytes, error: OSError) -> None:
            nonlocal errors
            errors += 1
            if errors <= ERRORS_RECORDED:
                ctx.error(self.name, f"cannot examine: {error.strerror}", path)

        started = time.monotonic()
        count = births = 0
        exclude = p.skip_dirs | {(out_st.st_dev, out_st.st_ino)}
        with ctx.engine.open_stream(BODYFILE, self.name, kind="bodyfile") as out:
            top = os.lstat(self.top)
            out.write(body_line(self.top, top, None).encode())
            for entry in walk_stats(self.top, on_error, exclude=exclude, exclude_devs=p.skip_devs):
                assert entry.stat is not None
                out.write(body_line(entry.path, entry.stat, entry.birth_ns).encode())
                count += 1
                births += entry.birth_ns is not None and entry.birth_ns > 0
                if count % 4096 == 0 and ctx.engine.stopped.is_set():
                    break
        seconds = time.monotonic() - started
        ctx.journal.append(
            "event",
            event="timeline",
            collector=self.name,
            entries=count,
            with_birth_time=births,
            errors=errors,
            mounts_skipped=len(p.skipped),
            milliseconds=int(seconds * 1000),
        )
        ctx.summary.add(
            "Timeline",
            f"{count} entries ({births} with birth time), {len(p.skipped)} mounts skipped, "
            f"{errors} errors, {seconds:.0f} s",
        )
