"""The kit's own dynamic loader: where it is and proof that it ignores the host's preload
list. One definition, used by the build (packaging/bundle_glibc.py patches the loader
and stops if the patch did not take) and by every kit start and ``selfcheck``.

The loader is the build machine's ``ld-linux-x86-64.so.2`` with its compiled-in
``/etc/ld.so.preload`` overwritten, same length, by a path under ``/proc/0``, which the
kernel's proc can never hold, and its default library directories likewise (the launcher
refuses to start when ``/proc`` and ``/sys`` are not the kernel's). Its bytes are covered
by the kit's signed sums; this check says what they mean, so a loader swapped for an
unpatched one under a re-signed kit is named as such."""

from __future__ import annotations

from pathlib import Path

GLIBC_DIR = "_internal/glibc"
KIT_SSH = "_internal/openssh/ssh"  # the build machine's ssh, run through this loader
LOADER = "ld-linux-x86-64.so.2"
PRELOAD_ORIGINAL = b"/etc/ld.so.preload\0"
PRELOAD_PATCH = b"/proc/0/ld.preload\0"
# The directories the loader searches last, for anything not found on --library-path
# (a dlopen'ed NSS module that /etc/nsswitch.conf names, e.g. libnss_systemd: tried, and
# the host's copy was loaded). Each is overwritten, same length, by one that cannot hold
# a file: under /proc/0, or /sys itself (the launcher checks both are the kernel's).
SYSTEM_DIRS_ORIGINAL = b"/lib/x86_64-linux-gnu/\0/usr/lib/x86_64-linux-gnu/\0/lib/\0/usr/lib/\0"
SYSTEM_DIRS_PATCH = b"/proc/0/no-system-lib/\0/proc/0/no-system-lib-usr/\0/sys/\0/proc/0//\0"
assert len(PRELOAD_ORIGINAL) == len(PRELOAD_PATCH)
assert len(SYSTEM_DIRS_ORIGINAL) == len(SYSTEM_DIRS_PATCH)
assert [len(d) for d in SYSTEM_DIRS_ORIGINAL.split(b"\0")] == [
    len(d) for d in SYSTEM_DIRS_PATCH.split(b"\0")
]


def loader_path(kit: Path) -> Path:
    return kit / GLIBC_DIR / LOADER


def loader_problem(loader: Path) -> str | None:
    """Why this loader could read the host's preload list, or None."""
    try:
        data = loader.read_bytes()
    except OSError as e:
        return f"{GLIBC_DIR}/{LOADER}: the kit's own loader is unreadable ({e.strerror or e})"
    if PRELOAD_ORIGINAL in data:
        return f"{GLIBC_DIR}/{LOADER}: the loader reads the host's {PRELOAD_ORIGINAL[:-1].decode()}"
    if data.count(PRELOAD_PATCH) != 1:
        return f"{GLIBC_DIR}/{LOADER}: the loader lacks its patched preload path"
    if SYSTEM_DIRS_ORIGINAL in data or SYSTEM_DIRS_PATCH not in data:
        return f"{GLIBC_DIR}/{LOADER}: the loader falls back to the host's library directories"
    return None
