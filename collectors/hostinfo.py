"""Who the host is, for the journal's first record."""

from __future__ import annotations

import platform
import socket
from typing import Any

import psutil

from manifests.clock import utc_from_ns

from .readfile import read_regular


def machine_id() -> str | None:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            # read_regular: a FIFO planted there would hold the run waiting for a writer
            return read_regular(path, 256).decode("ascii", "replace").strip() or None
        except OSError:
            continue
    return None


def identity() -> dict[str, Any]:
    boot = psutil.boot_time()
    return {
        "hostname": socket.gethostname(),
        "machine_id": machine_id(),
        "boot_time": utc_from_ns(int(boot * 1e9)),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
    }


def safe_hostname() -> str:
    """The host's name as it may appear in a directory name on any drive."""
    name = socket.gethostname() or "host"
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)[:64]
