"""The pre-flight: what a collection is about to do, said before anything is collected.

A responder at a console wants to know, before the first byte moves, whether the tool can
see everything (root or not), what it will take, roughly how much that is, and whether
the drive in their hand holds it. This informs; it never asks (no ``--yes``): the run
starts right after. The same facts go into ``--json`` as ``preflight``, and the size
estimate is what the live progress counts against.

The size comes from a pre-scan of the ``--path`` trees and the log sources: ``lstat``
only, nothing opened, and bounded in time (``SCAN_SECONDS``); a scan cut short says "at
least"."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.base import Collector, Stage
from collectors.logprofile import LogSource
from manifests import fstype
from manifests.fstype import FileSystem

from .console import Console, Estimate, human_bytes, plural
from .isolation.engine import Isolation

SCAN_SECONDS = 2.0
NOT_ROOT = (
    "not root: other users' process details and root-only logs cannot be read "
    "(each is recorded as an error), and --isolate is unavailable"
)


@dataclass
class Scan:
    files: int = 0
    bytes: int = 0  # what will be read (and hashed)
    allocated: int = 0  # what it occupies on disk (holes excluded)
    over_fat_limit: int = 0  # files FAT32 cannot hold
    complete: bool = True


@dataclass
class Preflight:
    root: bool
    collectors: list[str]
    profile: str | None
    paths: list[str]
    scan: Scan
    output: str
    file_system: FileSystem
    free: int | None
    isolation: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    image_bytes: int = 0  # a disk image (--image, preserve image): read and stored whole
    # Memory of flagged processes (--process-memory): at most this much, not estimated.
    memory_at_most: int = 0

    @property
    def needed(self) -> int:
        """Room the copies take on the output: a drive that keeps holes stores a sparse
        file's data only; FAT32 and exFAT store it whole."""
        copies = self.scan.allocated if self.file_system.supports_holes else self.scan.bytes
        return copies + self.image_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.free is None else self.needed <= self.free

    @property
    def estimate(self) -> Estimate:
        return Estimate(self.scan.files, self.scan.bytes, not self.scan.complete)

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "collectors": self.collectors,
            "profile": self.profile,
            "paths": self.paths,
            "estimate": {
                "files": self.scan.files,
                "bytes": self.scan.bytes,
                "bytes_on_output": self.needed,
                "at_least": not self.scan.complete,
                "image_bytes": self.image_bytes,
                "process_memory_at_most": self.memory_at_most,
            },
            "output": {
                "path": self.output,
                "file_system": self.file_system.name,
                "free_bytes": self.free,
                "fits": self.fits,
            },
            "isolation": self.isolation,
            "warnings": self.warnings,
        }


Selector = Callable[[bytes], bool]


def scan_trees(
    roots: list[bytes],
    seconds: float = SCAN_SECONDS,
    selected: list[tuple[bytes, Selector]] | None = None,
) -> Scan:
    """Count the regular files under ``roots`` and their sizes, by ``lstat`` alone
    (symlinks not followed, as the collectors do), stopping after ``seconds``; and under
    each root of ``selected`` only the files its selector takes (a log profile's
    include/exclude), each file once however many sources name it."""
    scan = Scan()
    deadline = time.monotonic() + seconds
    whole = _outermost(roots)
    _walk(scan, whole, deadline, None)
    seen: set[tuple[int, int]] = set()
    for root, selects in selected or []:
        if scan.complete and not _inside(os.path.realpath(root), whole):
            _walk(scan, [root], deadline, (selects, seen))
    return scan


def _inside(path: bytes, roots: list[bytes]) -> bool:
    return any(path == r or path.startswith(r.rstrip(b"/") + b"/") for r in roots)


def _walk(
    scan: Scan,
    roots: list[bytes],
    deadline: float,
    only: tuple[Selector, set[tuple[int, int]]] | None,
) -> None:
    def take(path: bytes, st: os.stat_result) -> None:
        if only is not None:
            selects, seen = only
            if (st.st_dev, st.st_ino) in seen or not selects(path):
                return
            seen.add((st.st_dev, st.st_ino))
        _count(scan, st)

    stack = list(roots)
    while stack:
        if time.monotonic() > deadline:
            scan.complete = False
            return
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            take(path, st)
        elif stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError), os.scandir(path) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            take(entry.path, entry.stat(follow_symlinks=False))


def _count(scan: Scan, st: os.stat_result) -> None:
    scan.files += 1
    scan.bytes += st.st_size
    scan.allocated += min(st.st_size, getattr(st, "st_blocks", 0) * 512)
    if st.st_size > fstype.FAT_MAX_FILE:
        scan.over_fat_limit += 1


def _outermost(roots: list[bytes]) -> list[bytes]:
    """Each tree once: a root inside another root is already counted by it."""
    real = sorted({os.path.realpath(r) for r in roots})
    kept: list[bytes] = []
    for r in real:
        if not any(r == k or r.startswith(k.rstrip(b"/") + b"/") for k in kept):
            kept.append(r)
    return kept


def _sources(collectors: list[Collector]) -> tuple[list[bytes], list[tuple[bytes, Selector]]]:
    """What the slow collectors will read: whole trees, and the roots of a log profile's
    sources with their include/exclude (``LogSource.covers``), so the estimate counts
    what the profile takes, not everything under /var/log."""
    whole: list[bytes] = []
    selected: list[tuple[bytes, Selector]] = []
    for c in collectors:
        if c.stage is not Stage.SLOW:
            continue
        profile = getattr(c, "profile", None)
        sources = getattr(profile, "sources", None)
        if isinstance(sources, tuple) and all(isinstance(s, LogSource) for s in sources):
            selected += [(s.root, s.covers) for s in sources if os.path.lexists(s.root)]
        else:
            whole += c.sources()
    return whole, selected


def _existing(path: Path) -> Path:
    """The output, or its nearest existing parent (the run creates what is missing)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _file_system(path: Path) -> FileSystem:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return fstype.UNKNOWN
    try:
        return fstype.probe(fd)
    finally:
        os.close(fd)


def survey(
    collectors: list[Collector],
    profile: str | None,
    paths: list[bytes],
    output: Path | object,
    isolation: Isolation | None,
    seconds: float = SCAN_SECONDS,
) -> Preflight:
    """Everything the pre-flight says, found without changing anything."""
    whole, selected = _sources(collectors)
    scan = scan_trees(list(paths) + whole, seconds, selected)
    # A remote output (sftp://) has no local file system to look at: unknown, as its room.
    where = _existing(output) if isinstance(output, Path) else None
    free: int | None = None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(where).free if where else None
    plan = Preflight(
        root=os.geteuid() == 0 if hasattr(os, "geteuid") else False,
        collectors=[c.name for c in collectors],
        profile=profile,
        paths=[os.fsdecode(p) for p in paths],
        scan=scan,
        output=str(output),
        file_system=_file_system(where) if where else fstype.UNKNOWN,
        free=free,
        image_bytes=sum(getattr(c, "image_bytes", 0) for c in collectors),
        memory_at_most=sum(getattr(c, "memory_at_most", 0) for c in collectors),
    )
    if isolation is not None:
        plan.isolation = {
            "method": isolation.method.name,
            "when": "after the volatile snapshot",
            "stays_open": isolation.request.stays_open(),
        }
    fs = plan.file_system
    if fs.max_file_size is not None:
        note = f"the output is {fs.name}: it holds no file of {human_bytes(fs.max_file_size + 1)}"
        if scan.over_fat_limit:
            note += f" or more; {plural(scan.over_fat_limit, 'file')} to collect will be refused"
        plan.warnings.append(note if scan.over_fat_limit else note + " or more")
    if plan.fits and plan.free is not None and plan.needed + plan.memory_at_most > plan.free:
        plan.warnings.append(
            f"the estimate fits, but with up to {human_bytes(plan.memory_at_most)} of process "
            f"memory it may not ({human_bytes(plan.free)} free): a full drive stops the run and "
            "seals; --process-memory SIZE or off stores less"
        )
    if plan.fits is False:
        plan.warnings.append(
            f"the estimate ({human_bytes(plan.needed)}) does not fit in the "
            f"{human_bytes(plan.free or 0)} free on the output: the run stops and seals "
            "when it is full; use a larger drive for everything"
        )
    return plan


def show(console: Console, plan: Preflight) -> None:
    """The pre-flight block on stderr (nothing with --quiet or --json)."""
    s = plan.scan
    about = "at least" if not s.complete else "about"
    rows = [
        ("running as", "root: every process and log is readable" if plan.root else NOT_ROOT),
        ("collecting", ", ".join(plan.collectors)),
    ]
    if plan.profile:
        rows.append(("log profile", plan.profile))
    if plan.paths:
        rows.append(("paths", ", ".join(plan.paths)))
    size = f"{about} {plural(s.files, 'file')}, {human_bytes(s.bytes)} to read"
    if plan.needed - plan.image_bytes != s.bytes:
        size += f" ({human_bytes(plan.needed - plan.image_bytes)} on the output)"
    if not s.complete:
        size += f" (pre-scan stopped after {SCAN_SECONDS:.0f} s)"
    if s.files or not plan.image_bytes:  # nothing but an image: no files to estimate
        rows.append(("estimate", size))
    if plan.image_bytes:
        rows.append(("disk image", f"{human_bytes(plan.image_bytes)} to read and store"))
    if plan.memory_at_most:
        rows.append(
            (
                "process memory",
                f"up to {human_bytes(plan.memory_at_most)} of flagged processes' memory "
                "(not in the estimate: which processes are flagged is known later)",
            )
        )
    room = "free space unknown"
    if plan.free is not None:
        verdict = {True: "fits", False: "DOES NOT FIT", None: ""}[plan.fits]
        room = f"{human_bytes(plan.free)} free: {verdict}"
    fs = "" if plan.file_system.name == "unknown" else f", {plan.file_system.name}"
    rows.append(("output", f"{plan.output}{fs}, {room}"))
    if plan.isolation:
        i = plan.isolation
        rows.append(
            ("isolation", f"{i['method']} {i['when']}; stays open: {'; '.join(i['stays_open'])}")
        )
    console.plain("pre-flight (nothing collected yet):")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.info(f"{key.ljust(width)}  {value}")
    for warning in plan.warnings:
        console.warn(warning)
