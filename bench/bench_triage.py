"""The triage run against what an examiner would do by hand, on this machine, same run.

Contender: ``preserve --profile PROFILE`` (default ``standard``, the default run: volatile
state, logs and the triage collectors) into a scratch directory. Baseline, the same
coverage with coreutils: ``find / -xdev -printf`` of every file (the bodyfile),
``sha256sum`` of the executables in the system and user bin/sbin/lib paths and of
everything in /tmp, /var/tmp and /dev/shm, and ``cp -a`` of /etc, the users' start-up
and SSH files and the staging directories.
Rounds alternate who goes first; the median is reported, with peak RSS and evidence size.
Usage: python bench/bench_triage.py [--fresh-staging] [WORKDIR] [PROFILE] [ROUNDS].

``--fresh-staging`` runs both sides in a private mount namespace with empty tmpfs over
/tmp, /var/tmp and /dev/shm: on a shared test machine those hold gigabytes of other
jobs' files, which the baseline hashes whole and a server's staging directories do
not hold (this machine's own mounts are not changed)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, machine, timed  # noqa: E402

EXEC_DIRS = "/bin /sbin /lib /lib64 /usr/bin /usr/sbin /usr/lib /usr/lib64 /usr/local /opt"
STAGING = "/tmp /var/tmp /dev/shm"


def baseline_script(scratch: Path) -> str:
    copy = scratch / "copy"
    return f"""set -e
mkdir -p {copy}
find / -xdev -printf '0|%p|%i|%M|%U|%G|%s|%A@|%T@|%C@|0\\n' > {scratch}/bodyfile 2>/dev/null || true
{{ find {EXEC_DIRS} -xdev -type f -perm /111 -print0 2>/dev/null || true
  find {STAGING} -xdev -type f -print0 2>/dev/null || true; }} \
  | xargs -0 -r sha256sum > {scratch}/hashes 2>/dev/null || true
cp -a /etc {copy}/ 2>/dev/null || true
for h in /root /home/*; do
  [ -d "$h" ] || continue
  mkdir -p {copy}/homes/"$h"
  for f in .bashrc .profile .bash_logout .zshrc .bash_history .ssh; do
    [ -e "$h/$f" ] && cp -a "$h/$f" {copy}/homes/"$h"/ 2>/dev/null || true
  done
done
for d in {STAGING}; do mkdir -p {copy}/staging"$d"; \
  find "$d" -xdev -maxdepth 3 -type f -size -10M -exec cp -a --parents {{}} {copy}/staging \\; \
  2>/dev/null || true; done
"""


def size_of(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def _fresh_staging() -> None:
    """Run this script again in its own mount namespace, staging directories empty."""
    sys.argv.remove("--fresh-staging")
    mounts = "for d in /tmp /var/tmp /dev/shm; do mount -t tmpfs bench-staging $d || exit 9; done"
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mounts}; exec "$@"']
    os.execvp("unshare", [*argv, "sh", sys.executable, *sys.argv])


def main() -> None:
    if "--fresh-staging" in sys.argv:
        _fresh_staging()
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(dir="/var/tmp"))
    profile = sys.argv[2] if len(sys.argv) > 2 else "standard"
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    base.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    walls: dict[str, list[float]] = {"baseline": [], "preserve": []}
    peak = {"baseline": 0, "preserve": 0}
    size = {"baseline": 0, "preserve": 0}

    def run_baseline(n: int) -> None:
        scratch = base / f"baseline{n}"
        scratch.mkdir()
        script = scratch.with_suffix(".sh")
        script.write_text(baseline_script(scratch))
        wall, rss, _ = timed(["bash", script])
        walls["baseline"].append(wall)
        peak["baseline"] = max(peak["baseline"], rss)
        size["baseline"] = size_of(scratch)
        shutil.rmtree(scratch)

    def run_preserve(n: int) -> None:
        out = base / f"preserve{n}"
        out.mkdir()
        wall, rss, rc = timed([*PRESERVE, "-q", "-o", out, "--profile", profile])
        assert rc in (0, 1), rc
        walls["preserve"].append(wall)
        peak["preserve"] = max(peak["preserve"], rss)
        size["preserve"] = size_of(out)
        shutil.rmtree(out)

    for n in range(rounds):
        order = (run_baseline, run_preserve) if n % 2 == 0 else (run_preserve, run_baseline)
        for step in order:
            step(n)
    med = {k: statistics.median(v) for k, v in walls.items()}
    for k, v in med.items():
        runs = ", ".join(f"{x:.1f}" for x in walls[k])
        print(
            f"{k:>9}: {v:6.1f} s (median of {rounds}: {runs}); peak RSS {peak[k]} MiB; "
            f"output {size[k] / 1024**2:.0f} MiB"
        )
    print(
        f"ratio preserve --profile {profile} / baseline = {med['preserve'] / med['baseline']:.2f}"
        "  (target <= 0.60; peak RSS target < 150 MiB)"
    )
    if len(sys.argv) <= 1:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
