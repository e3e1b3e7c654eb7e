"""Is the output on a removable drive? Writing evidence to the host's own disk can
overwrite deleted files that are themselves evidence, so the responder is warned.

Heuristic (Linux sysfs): take the device of the filesystem holding the output (its
nearest existing ancestor), find it under ``/sys/dev/block/MAJOR:MINOR``, go from a
partition to its disk, and call it removable when the disk's ``removable`` flag is 1 or
it sits behind a USB bus (USB hard disks often report ``removable`` 0). Device-mapper and
md devices are removable only when all the disks under them (``slaves/``) are. A
filesystem with no block device (tmpfs, NFS, overlay, btrfs subvolumes) gives no verdict,
so no warning."""

from __future__ import annotations

import os
from pathlib import Path

SYS_DEV_BLOCK = Path("/sys/dev/block")


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _disk_removable(device: Path, depth: int = 0) -> bool:
    real = device.resolve()
    if "/usb" in str(real):
        return True
    disk = real.parent if (real / "partition").exists() else real
    slaves = sorted((disk / "slaves").glob("*")) if (disk / "slaves").is_dir() else []
    if slaves and depth < 8:
        return all(_disk_removable(s, depth + 1) for s in slaves)
    try:
        return (disk / "removable").read_text().strip() == "1"
    except OSError:
        return False


def fixed_disk_of(output: Path) -> str | None:
    """The name of the host's non-removable disk holding ``output``, or None when it is
    removable or there is no verdict."""
    try:
        st = os.stat(_existing_ancestor(output))
        device = SYS_DEV_BLOCK / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        if not device.exists():
            return None
        return None if _disk_removable(device) else device.resolve().name
    except OSError:
        return None


def unwritable_reason(output: Path) -> str | None:
    """Why evidence cannot be written under ``output``, found before anything is
    collected (a read-only drive, a directory the user may not write, a file in the way),
    or None. Nothing is created to find out."""
    where = _existing_ancestor(output)
    if not where.is_dir():
        return f"{where} is not a directory"
    try:
        if os.statvfs(where).f_flag & os.ST_RDONLY:
            return f"{where} is on a file system mounted read-only"
    except OSError as e:
        return f"{where} cannot be examined: {e.strerror}"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"{where} is not writable by this user"
    return None
