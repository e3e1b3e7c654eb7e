"""What the fileflags, auditrules, pacct and locate collectors add to the default run
(profile ``standard``), measured in the same run, rounds interleaved: ``--only clock``
(the fixed cost of a run) against ``--only clock,fileflags,auditrules,pacct,locate``, and
each collector's own time from its journal record.

Twice: on this host as it is, and on the same host with what a server would have
(in a private mount namespace, /var under an overlay, nothing of this machine changed):
a plocate database of the whole root built by the real ``updatedb``, and a pacct file
of 50,000 records (the newest the standard profile decodes) repeated from records the
kernel wrote through ``acct(2)``.

    sudo .venv/bin/python bench/bench_host_trails.py [--rounds N]"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import PRESERVE, ROOT, collector_durations, machine

NEW = "fileflags,auditrules,pacct,locate"
_ACCT = """import ctypes, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
open(sys.argv[1], "wb").close(); assert libc.acct(sys.argv[1].encode()) == 0
for _ in range(20): subprocess.run(["/bin/true"])
libc.acct(None)
"""
_SERVER = """set -e
mount -t tmpfs bench /mnt; mkdir -p /mnt/up /mnt/work /mnt/out
mount -t overlay overlay -o lowerdir=/var,upperdir=/mnt/up,workdir=/mnt/work /var
mkdir -p /var/lib/plocate /var/log/account
updatedb -o /var/lib/plocate/plocate.db -l no
python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); n = 50000 // (len(d) // 64) + 1
open("/var/log/account/pacct", "wb").write((d * n)[: 50000 * 64])' {pacct}
"""


def _run(args: list[str], server: Path | None) -> tuple[float, dict[str, float]]:
    """(wall s, each collector's own time) of one ``preserve`` run."""
    out = Path(tempfile.mkdtemp(prefix="bench-trails-"))
    try:
        argv = " ".join(f"'{a}'" for a in [*PRESERVE, "-q", "-o", str(out), *args])
        timing = f"s=$(date +%s.%N); {argv} >/dev/null 2>&1 || true; e=$(date +%s.%N)"
        script = f"{server.read_text() if server else ''}\n{timing}\necho $s $e"
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        start, end = map(float, done.stdout.split()[-2:])
        durations = collector_durations(out)
        return end - start, durations
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _pacct(work: Path) -> Path:
    (work / "acct.py").write_text(_ACCT)
    subprocess.run(
        ["unshare", "-m", "--pid", "--fork", "--propagation", "private", "sh", "-ec",
         f"mount -t tmpfs a /mnt; {sys.executable} {work}/acct.py /mnt/p; cp /mnt/p {work}/p"],
        check=True,
    )  # fmt: skip
    return work / "p"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    a = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-trails-work-"))
    server = work / "server.sh"
    server.write_text(_SERVER.format(pacct=_pacct(work)))
    print(machine())
    for label, setup in (("this host", None), ("with plocate.db of / and 50,000 pacct", server)):
        got: dict[str, list[tuple[float, dict[str, float]]]] = {"clock": [], NEW: []}
        for r in range(a.rounds):
            for only in ["clock", NEW] if r % 2 == 0 else [NEW, "clock"]:
                args = ["--profile", "standard", "--only", "clock" if only == "clock" else
                        f"clock,{NEW}"]  # fmt: skip
                got[only].append(_run(args, setup))
        base = statistics.median(w for w, _ in got["clock"])
        wall = statistics.median(w for w, _ in got[NEW])
        own = {c: statistics.median(d.get(c, 0.0) for _, d in got[NEW]) for c in NEW.split(",")}
        print(f"{label}: --only clock {base:.3f} s, +{NEW} {wall:.3f} s (x{wall / base:.2f}, "
              f"+{wall - base:.3f} s); own time: "
              + ", ".join(f"{c} {t * 1000:.0f} ms" for c, t in own.items()))  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
