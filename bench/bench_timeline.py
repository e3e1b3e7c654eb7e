"""The timeline collector against ``find / -xdev -printf`` of the same bodyfile fields,
on this machine, same run: wall time, CPU time (user + system, the walk's child process
included) and peak RSS. Rounds rotate the order; medians are reported.

    .venv/bin/python bench/bench_timeline.py [--rounds N] [--other CHECKOUT]

``--other`` also runs ``preserve --only timeline`` from another checkout (its own
``.venv``), e.g. ``/work/main`` for the figures before a change."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PRESERVE, ROOT, machine

FIND = "find / -xdev -printf '0|%p|%i|%M|%U|%G|%s|%A@|%T@|%C@|0\\n' > {out}/find.txt 2>/dev/null"


def _run(argv: list[str], cwd: Path, shell: bool = False) -> tuple[float, float, int]:
    """(wall s, CPU s of the process and its children, peak RSS MiB) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv[0] if shell else argv,
        cwd=cwd,
        shell=shell,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--other", type=Path)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-timeline-", dir="/root"))
    contenders: dict[str, tuple[list[str], Path, bool]] = {
        "find -printf": ([FIND.format(out=work)], ROOT, True),
        "preserve --only timeline": (
            [*PRESERVE, "-q", "-o", str(work), "--only", "timeline"],
            ROOT,
            False,
        ),
    }
    if opts.other:
        python = str(opts.other / ".venv/bin/python")
        argv = [python, *PRESERVE[1:], "-q", "-o", str(work), "--only", "timeline"]
        contenders[f"same, {opts.other}"] = (argv, opts.other, False)
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in contenders}
    names = list(contenders)
    for n in range(opts.rounds):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            argv, cwd, shell = contenders[name]
            results[name].append(_run(argv, cwd, shell))
            subprocess.run(["rm", "-rf", *map(str, work.iterdir())], check=True)
    work.rmdir()
    print(f"machine: {machine()}")
    print(f"load at the end: {Path('/proc/loadavg').read_text().strip()}; rounds: {opts.rounds}")
    base = statistics.median(r[0] for r in results["find -printf"])
    print("| run | wall (median) | ratio to find | CPU (median) | peak RSS |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        rss = max(r[2] for r in rows)
        print(f"| {name} | {wall:.1f} s | {wall / base:.2f} | {cpu:.1f} s | {rss} MiB |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
