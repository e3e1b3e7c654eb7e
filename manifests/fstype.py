"""What file system an evidence directory is on, and what that means for storing evidence.

Responder drives are FAT32 or exFAT more often than not, and their limits must be known
before a byte is copied, not discovered 4 GiB into a copy: FAT32 holds no file of 4 GiB
or more, and neither FAT32 nor exFAT stores holes (a sparse source costs its full size
there). Names are not a concern here: the copy engine stores every name in a form that
both accept.

Found once per evidence directory, from the kernel's own view: the ``statfs`` magic
number, then ``/proc/self/mountinfo`` for FUSE mounts (``fusefat`` shows as
``fuse.fusefat``; ``exfat-fuse`` and ``ntfs-3g`` both as ``fuseblk``, told apart by the
volume's boot sector). Where nothing is known (another OS, an unknown FUSE file system)
the answer is "no size limit, holes kept", which is how the tool behaved before it asked.

Availability: Linux. Elsewhere ``probe`` reports an unknown file system."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass

FAT_MAX_FILE = 2**32 - 1  # FAT12/16/32 keep a file's size in 32 bits
MOUNTINFO = "/proc/self/mountinfo"

_MSDOS_MAGIC = 0x4D44
_EXFAT_MAGIC = 0x2011BAB0


@dataclass(frozen=True)
class FileSystem:
    """What the output can store. ``max_file_size``: the largest file it holds (None: no
    limit that matters); ``supports_holes``: a skipped range costs no space."""

    name: str
    max_file_size: int | None = None
    supports_holes: bool = True


UNKNOWN = FileSystem("unknown")
_FAT32 = FileSystem("FAT32", FAT_MAX_FILE, False)
_EXFAT = FileSystem("exFAT", None, False)


def probe(fd: int) -> FileSystem:
    """The file system holding the open directory ``fd``; never raises."""
    if not sys.platform.startswith("linux"):
        return UNKNOWN
    magic = _statfs_magic(fd)
    if magic == _MSDOS_MAGIC:
        return _FAT32
    if magic == _EXFAT_MAGIC:
        return _EXFAT
    mount = _mount_of(fd)
    if mount is None:
        return UNKNOWN
    fstype, source = mount
    if fstype == "fuseblk":
        # An unreadable or unknown volume: assume no holes, so space is never underrated.
        return _from_boot_sector(source) or FileSystem("fuseblk", None, False)
    return _from_type_name(fstype.removeprefix("fuse.")) or FileSystem(fstype)


def _from_type_name(name: str) -> FileSystem | None:
    """``vfat``, ``msdos``, ``exfat`` and FUSE subtypes such as ``fusefat``."""
    if "exfat" in name:
        return _EXFAT
    if "fat" in name or name == "msdos":
        return _FAT32
    return None


def _from_boot_sector(device: str) -> FileSystem | None:
    """FAT, exFAT or NTFS, from the first sector of a FUSE volume's device (root only)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        sector = os.pread(fd, 512, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if sector[3:11] == b"EXFAT   ":
        return _EXFAT
    if sector[3:11] == b"NTFS    ":
        return FileSystem("NTFS")
    if sector[82:90] == b"FAT32   ":
        return _FAT32
    if sector[54:62] in (b"FAT12   ", b"FAT16   "):
        return FileSystem(sector[54:59].decode(), FAT_MAX_FILE, False)
    return None


def _statfs_magic(fd: int) -> int | None:
    """``f_type`` of ``fstatfs``: the first field of ``struct statfs`` on Linux."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        buf = (ctypes.c_long * 32)()  # struct statfs is 120 bytes on 64-bit Linux
        if libc.fstatfs(fd, buf) == 0:
            return buf[0] & 0xFFFFFFFF
    return None


def _mount_of(fd: int) -> tuple[str, str] | None:
    """(file system type, source) of the mount holding ``fd``, matched by device number;
    the last match wins, as the later mount is the one on top."""
    try:
        st = os.fstat(fd)
        with open(MOUNTINFO, "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    except OSError:
        return None
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    found = None
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 3 or fields[2] != device or " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split(" ")
        if len(after) >= 2:
            found = (_unescape(after[0]), _unescape(after[1]))
    return found


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\ooo``."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
