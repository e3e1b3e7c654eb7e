"""What is being imaged, as the kernel describes it, recorded before a byte is read.

The source is opened read-only (``O_RDONLY``) and nothing but ``read``, ``lseek`` and
``fstat`` is ever done on it: no ioctl at all, not even the read-only ones, so nothing a
driver might do on an ioctl can happen. Everything else comes from ``/sys`` (size, sector
sizes, model, serial, removable, read-only, a loop device's backing file, partitions,
holders) and ``/proc/self/mountinfo`` (is it, or one of its partitions, mounted, and
read-write?). A regular file (a VM disk) is imaged the same way, with what ``fstat`` says.

Availability: Linux for ``/sys`` and ``mountinfo``; elsewhere only size and type."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from manifests.errors import UsageError
from manifests.fstype import MOUNTINFO, _unescape

SYS_DEV_BLOCK = "/sys/dev/block"
DEFAULT_SECTOR = 512
_ATTRIBUTES = {  # journal field: path under the device's /sys directory
    "model": "device/model",
    "vendor": "device/vendor",
    "serial": "device/serial",
    "wwid": "wwid",
    "firmware": "device/firmware_rev",
    "removable": "removable",
    "read_only": "ro",
    "loop_backing_file": "loop/backing_file",
}


@dataclass
class Source:
    """An opened source and everything recorded about it."""

    path: str
    fd: int
    size: int
    block_device: bool
    logical_sector: int = DEFAULT_SECTOR
    physical_sector: int = DEFAULT_SECTOR
    info: dict[str, Any] = field(default_factory=dict)
    mounts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mounted_rw(self) -> list[dict[str, Any]]:
        return [m for m in self.mounts if m["writable"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "real_path": os.path.realpath(self.path),
            "kind": "block device" if self.block_device else "regular file",
            "size": self.size,
            "logical_sector_size": self.logical_sector,
            "physical_sector_size": self.physical_sector,
            **self.info,
            "mounts": self.mounts,
        }

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_source(path: str) -> Source:
    """Open ``path`` read-only and describe it; a ``UsageError`` (one line, exit 2) when
    it is missing, unreadable, or neither a block device nor a regular file."""
    try:
        # O_NONBLOCK: a FIFO given by mistake must not hang the open (cleared below).
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        hint = {
            errno.ENOENT: "check the name (lsblk lists the disks); nothing was imaged",
            errno.EACCES: "run it as root; nothing was imaged",
            errno.EPERM: "run it as root; nothing was imaged",
        }.get(e.errno or 0, "nothing was imaged")
        raise UsageError(f"cannot open {path}: {e.strerror}", hint=hint) from e
    try:
        st = os.fstat(fd)
        if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise UsageError(
                f"{path} is neither a block device nor a regular file",
                hint="give a disk (/dev/sdb), a partition (/dev/sdb1) or a disk image file",
            )
        os.set_blocking(fd, True)
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        source = Source(path, fd, size, stat.S_ISBLK(st.st_mode))
        if source.block_device:
            _describe_block(source, st.st_rdev)
        else:
            source.info = {
                "stat": {"dev": st.st_dev, "ino": st.st_ino, "mtime_ns": str(st.st_mtime_ns)}
            }
    except BaseException:
        os.close(fd)
        raise
    return source


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None


def _describe_block(source: Source, rdev: int) -> None:
    number = f"{os.major(rdev)}:{os.minor(rdev)}"
    sysdir = os.path.realpath(os.path.join(SYS_DEV_BLOCK, number))
    partition = _read(os.path.join(sysdir, "partition"))
    disk = os.path.dirname(sysdir) if partition else sysdir  # a partition's queue is its disk's
    info: dict[str, Any] = {"name": os.path.basename(sysdir), "dev": number}
    for key, rel in _ATTRIBUTES.items():
        value = _read(os.path.join(disk, rel))
        if value:
            info[key] = value
    if partition:
        info["partition"] = {
            "number": int(partition),
            "of": os.path.basename(disk),
            "start_sector": int(_read(os.path.join(sysdir, "start")) or 0),
        }
    logical = _read(os.path.join(disk, "queue/logical_block_size"))
    physical = _read(os.path.join(disk, "queue/physical_block_size"))
    source.logical_sector = int(logical) if logical and logical.isdigit() else DEFAULT_SECTOR
    source.physical_sector = int(physical) if physical and physical.isdigit() else DEFAULT_SECTOR
    children = _partitions(sysdir)
    if children:
        info["kernel_partitions"] = children
    holders = _listdir(os.path.join(sysdir, "holders"))
    if holders:
        info["holders"] = holders  # device-mapper, md, LVM on top of it: in use
    source.info = info
    names = {info["name"], *(c["name"] for c in children)}
    numbers = {number, *(c["dev"] for c in children)}
    source.mounts = mounts_of(numbers, {f"/dev/{n}" for n in names})


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _partitions(sysdir: str) -> list[dict[str, Any]]:
    found = []
    for name in _listdir(sysdir):
        child = os.path.join(sysdir, name)
        if _read(os.path.join(child, "partition")) is None:
            continue
        found.append(
            {
                "name": name,
                "dev": _read(os.path.join(child, "dev")) or "",
                "start_sector": int(_read(os.path.join(child, "start")) or 0),
                "sectors": int(_read(os.path.join(child, "size")) or 0),
            }
        )
    return found


def mounts_of(numbers: set[str], sources: set[str]) -> list[dict[str, Any]]:
    """Every mount of these devices (by device number, or by source name for file systems
    such as btrfs that show another number). ``writable``: the file system itself is
    mounted read-write somewhere, whatever this one mount's own flags say."""
    try:
        with open(MOUNTINFO, "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        if " - " not in line:
            continue
        before, after = line.split(" - ", 1)
        fields, rest = before.split(" "), after.split(" ")
        if len(fields) < 6 or len(rest) < 3:
            continue
        source = _unescape(rest[1])
        if fields[2] not in numbers and source not in sources:
            continue
        super_options = rest[2].split(",")
        found.append(
            {
                "mount_point": _unescape(fields[4]),
                "fstype": rest[0],
                "source": source,
                "options": fields[5],
                "writable": "rw" in super_options,
            }
        )
    return found
