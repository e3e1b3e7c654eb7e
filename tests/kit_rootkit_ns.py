"""A rootkitted host in miniature, inside the private mount and PID namespace this runs in
(``unshare -m -p -f --mount-proc``, as root): ``/etc`` is an overlay on the real one (the
real ``/etc`` is never written), its ``/etc/ld.so.preload`` names the hooking library,
and a renamed ``sleep`` runs as ``evil-miner``. Then each command runs, with LD_PRELOAD
and LD_AUDIT also naming the library, and one JSON object reports what they printed.

Usage: python kit_rootkit_ns.py WORKDIR LIBRARY COMMANDS_JSON
COMMANDS_JSON: a list of argv lists. Prints {"pid": N, "runs": [{"rc", "stdout", "stderr"}]}.
The interpreter running this file was started before the preload list existed, so it is
not hooked itself; every program it starts is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys


def main() -> None:
    work, library, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    upper, scratch = os.path.join(work, "upper"), os.path.join(work, "ovl-work")
    os.makedirs(upper)
    os.makedirs(scratch)
    subprocess.run(
        ["mount", "-t", "overlay", "etc-overlay", "-o",
         f"lowerdir=/etc,upperdir={upper},workdir={scratch}", "/etc"],
        check=True,
    )  # fmt: skip
    miner = os.path.join(work, "evil-miner")
    shutil.copyfile("/bin/sleep", miner)
    os.chmod(miner, 0o755)
    hidden = subprocess.Popen([miner, "600"])
    with open("/etc/ld.so.preload", "w") as f:
        f.write(library + "\n")
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": library, "LD_AUDIT": library}
    runs = []
    try:
        for argv in commands:
            done = subprocess.run(argv, env=env, capture_output=True, timeout=300, cwd=work)
            runs.append(
                {
                    "rc": done.returncode,
                    "stdout": done.stdout.decode("utf-8", "replace"),
                    "stderr": done.stderr.decode("utf-8", "replace")[-4000:],
                }
            )
    finally:
        hidden.kill()
        hidden.wait()
    print(json.dumps({"pid": hidden.pid, "runs": runs}))


if __name__ == "__main__":
    main()
