"""Red flags: cheap, explainable signs that a process deserves the responder's eyes first.

Each flag is a name plus a one-line reason. They are hints, not verdicts: a flag is
computed from facts the snapshot already holds (the raw ``/proc/PID/exe`` link, the name,
the argv, the sockets) and from two ``stat`` calls made through ``/proc/PID/root`` so
that a process in another mount namespace is judged against its own file system.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

DELETED_SUFFIX = b" (deleted)"
WRITABLE_PREFIXES = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/dev/mqueue/")
MEMORY_PREFIXES = ("memfd:", "/memfd:")
# Where Debian/RHEL-family packages put executables; anything listening from elsewhere
# was placed by hand (or by an intruder).
PACKAGE_PREFIXES = (
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/libexec/",
    "/usr/share/",
    "/bin/",
    "/sbin/",
    "/lib/",
    "/lib64/",
)
# Kernel thread names that malware likes to wear (``[kworker/0:1]`` in ps output).
KTHREAD_NAME = re.compile(
    r"^\[?(kworker|kthreadd|ksoftirqd|kswapd|kcompactd|khugepaged|migration|rcu_\w+|"
    r"watchdog|jbd2|kblockd|kdevtmpfs|kauditd|khungtaskd|oom_reaper|writeback|"
    r"cpuhp|idle_inject|ksmd|netns|kintegrityd|kthrotld|irq)\b",
)


def exe_text(link: bytes | None) -> tuple[str | None, bool]:
    """The executable's path as text, and whether the kernel marked it deleted."""
    if link is None:
        return None, False
    deleted = link.endswith(DELETED_SUFFIX)
    if deleted:
        link = link[: -len(DELETED_SUFFIX)]
    return link.decode("utf-8", "backslashreplace"), deleted


def _same_file(pid: int, path: str) -> bool | None:
    """Is the file now at ``path`` (in the process's root) the one it runs? None: unknown."""
    try:
        running = os.stat(f"/proc/{pid}/exe")
        on_disk = os.stat(f"/proc/{pid}/root{path}")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    return (running.st_dev, running.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _exists(pid: int, path: str) -> bool:
    return os.path.lexists(f"/proc/{pid}/root{path}")


def _world_writable_dir(pid: int, path: str) -> bool:
    try:
        st = os.stat(f"/proc/{pid}/root{os.path.dirname(path)}")
    except OSError:
        return False
    return bool(st.st_mode & stat.S_IWOTH)


def _is_kernel_thread(proc: dict[str, Any]) -> bool:
    return proc.get("pid") == 2 or proc.get("ppid") == 2


def flags_for(proc: dict[str, Any], link: bytes | None, listening: bool) -> list[dict[str, str]]:
    """Every red flag for one process record (see docs/volatile.md for the list)."""
    found: list[dict[str, str]] = []

    def flag(name: str, reason: str) -> None:
        found.append({"flag": name, "reason": reason})

    pid = proc["pid"]
    exe, deleted = exe_text(link)
    name = proc.get("name") or ""
    raw_cmdline = proc.get("cmdline")
    cmdline: list[Any] = raw_cmdline if isinstance(raw_cmdline, list) else []
    if exe and deleted and not exe.startswith(MEMORY_PREFIXES):  # memfds are never on disk
        flag("exe_deleted", f"its executable {exe} was deleted from disk")
    # Replacing a running binary (rename over it) also marks the old one deleted; a bind
    # mount over it does not. Either way, the path now holds another file.
    if (
        exe is not None
        and exe.startswith("/")
        and _same_file(pid, exe) is False
        and (not deleted or _exists(pid, exe))
    ):
        flag("exe_replaced", f"the file now at {exe} is not the one it runs")
    if exe and exe.startswith(MEMORY_PREFIXES):
        flag("exe_in_memory", f"runs from an anonymous memory file ({exe})")
    elif exe and (exe.startswith(WRITABLE_PREFIXES) or _world_writable_dir(pid, exe)):
        flag("exe_in_writable_location", f"runs from a world-writable location ({exe})")
    if exe and name:
        base = os.path.basename(exe)
        args = [os.path.basename(a)[:15] for a in cmdline[:2] if isinstance(a, str)]
        if base[:15] != name[:15] and name[:15] not in args:
            flag("name_mismatch", f"calls itself {name!r} but runs {base!r}")
    if not _is_kernel_thread(proc) and (
        KTHREAD_NAME.match(name) or (cmdline and str(cmdline[0]).startswith("["))
    ):
        flag("kernel_thread_name", f"a user-space process named like a kernel thread ({name!r})")
    if listening and exe and not exe.startswith(PACKAGE_PREFIXES):
        flag("listening_outside_package_paths", f"listens on a port but runs {exe}")
    return found
