"""What the boot, mail, browsers and credentials collectors (and the larger persistence
trees: tmpfiles.d, sysctl.d, binfmt.d, environment.d, generators, initramfs hooks) add to
the default run. Baselines measured in the same run, rounds interleaved and rotated:
this checkout with ``--skip boot,mail,browsers,credentials``, and, with ``--main DIR``,
another checkout's default run (the code before this change).

    .venv/bin/python bench/bench_triage_extras.py [--rounds N] [--main /work/main]

Also prints this machine's SHA-256 rate in Python, to scale the cost of /boot (a server's
kernels and initramfs images: 100 to 300 MB, hashed once a run) on a host whose /boot
is empty."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import PRESERVE, ROOT, collector_durations, machine, timed

NEW = "boot,mail,browsers,credentials"


def _one(python: list[str], cwd: Path, args: list[str]) -> tuple[float, int, dict[str, float]]:
    """(wall s, peak RSS MiB, each collector's own time in s from its journal record)."""
    out = Path(tempfile.mkdtemp(prefix="bench-extras-"))
    try:
        wall, rss, status = timed([*python, "-q", "-o", str(out), *args], cwd=cwd)
        assert status in (0, 1), status
        durations = collector_durations(out)
        return wall, rss, durations
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _sha256_rate() -> float:
    data = b"\0" * (64 << 20)
    started = time.perf_counter()
    for _ in range(4):
        hashlib.sha256(data).digest()
    return 4 * 64 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--main", type=Path, help="a checkout of the code before, with .venv")
    a = parser.parse_args()
    runs: dict[str, tuple[list[str], Path, list[str]]] = {
        f"default without {NEW}": (PRESERVE, ROOT, ["--skip", NEW]),
        "default (this checkout)": (PRESERVE, ROOT, []),
    }
    if a.main:
        before = [str(a.main / ".venv/bin/python"), *PRESERVE[1:]]
        runs["default (--main checkout)"] = (before, a.main, [])
    got: dict[str, list[tuple[float, int, dict[str, float]]]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(a.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            got[name].append(_one(*runs[name]))
    print(machine())
    base = statistics.median(w for w, _, _ in got[names[0]])
    for name in names:
        wall = statistics.median(w for w, _, _ in got[name])
        rss = max(m for _, m, _ in got[name])
        print(f"{name:45} {wall:6.2f} s  x{wall / base:4.2f}  peak RSS {rss} MiB")
        own = {
            c: statistics.median(d.get(c, 0.0) for _, _, d in got[name])
            for c in ("persistence", *NEW.split(","))
        }
        print(
            "    collectors' own time (median s): "
            + ", ".join(f"{c} {t:.3f}" for c, t in own.items())
        )
    print(f"SHA-256 in Python here: {_sha256_rate():.0f} MiB/s")


if __name__ == "__main__":
    main()
