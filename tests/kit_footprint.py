"""Run a command with private, empty ``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/root``
and report what it left there. Run as root under ``unshare -m --propagation private``.

Other processes on the machine keep writing to the real directories; inside this mount
namespace only the command under test can write to these, so anything left in them was
written by it. The directories the test needs (the kit, the test's own directory) are
bound back in at their usual paths.

Usage: python kit_footprint.py KEEP_DIR[:KEEP_DIR...] -- COMMAND ..."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PRIVATE = ("/tmp", "/var/tmp", "/dev/shm", "/root")


def under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def main() -> None:
    split = sys.argv.index("--")
    keep = [os.path.realpath(p) for p in sys.argv[1].split(":") if p]
    command = sys.argv[split + 1 :]
    fds = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in keep}
    tops = [d for d in PRIVATE if os.path.isdir(d) and not os.path.islink(d)]
    for top in tops:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "footprint", top], check=True)
    made: set[str] = set()
    for path, fd in fds.items():
        if any(under(path, t) for t in tops):
            os.makedirs(path, exist_ok=True)
            parent = path
            while parent not in ("/", ""):
                made.add(parent)
                parent = os.path.dirname(parent)
            subprocess.run(
                ["mount", "--no-canonicalize", "--bind", f"/proc/self/fd/{fd}", path],
                check=True,
                pass_fds=[fd],
            )
    status = subprocess.run(command, timeout=300).returncode
    for path in keep:
        if any(under(path, t) for t in tops):
            subprocess.run(["umount", "-l", path], check=True)
    left = []
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                if full not in made:
                    left.append(full)
    print(json.dumps({"status": status, "left": sorted(left), "private": tops}))


if __name__ == "__main__":
    main()
