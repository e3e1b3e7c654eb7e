"""``stat`` results as journal fields. Inode, device and nanosecond times are strings so
canonical JSON never meets an integer above 2**53."""

from __future__ import annotations

import os
import stat as stat_mod
from typing import Any


def stat_fields(st: os.stat_result) -> dict[str, Any]:
    return {
        "mode": st.st_mode,
        "mode_text": stat_mod.filemode(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "ino": str(st.st_ino),
        "dev": str(st.st_dev),
        "nlink": st.st_nlink,
        "size": st.st_size,
        "atime_ns": str(st.st_atime_ns),
        "mtime_ns": str(st.st_mtime_ns),
        "ctime_ns": str(st.st_ctime_ns),
    }


def kind_of(mode: int) -> str:
    for test, name in (
        (stat_mod.S_ISREG, "regular file"),
        (stat_mod.S_ISDIR, "directory"),
        (stat_mod.S_ISLNK, "symlink"),
        (stat_mod.S_ISFIFO, "fifo"),
        (stat_mod.S_ISSOCK, "socket"),
        (stat_mod.S_ISCHR, "character device"),
        (stat_mod.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "unknown"
