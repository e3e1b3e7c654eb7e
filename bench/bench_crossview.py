"""Benchmark: what cross-view enumeration adds, against a plain listing in the same run.

Measures, alternating, ``--runs`` times each:

- the baseline: ``os.listdir("/proc")`` (what psutil and ``ps`` do) and ``ps -e``;
- each view of collectors/crossview.py alone: raw ``getdents64``, the native
  ``kill(pid, 0)`` probe to 32,768 and to 4,194,304 (the probe does not need pid_max to be
  that large: PIDs above it simply answer ESRCH, so nothing on the machine is changed),
  and the libc ``syscall()`` loop the probe falls back to where executable memory is
  refused;
- the whole survey (every view, the fd scan and the confirmation) at this host's pid_max.

Budget (issue 13): at most 1 s added at pid_max 32,768 and 5 s at 4,194,304.
Usage: ``python bench/bench_crossview.py [--runs 5]``
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import machine  # noqa: E402

from collectors import crossview, rawsys  # noqa: E402


def _libc_loop(hi: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    kill = rawsys.NR["kill"]
    for pid in range(1, hi + 1):
        libc.syscall(kill, pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[], object]]] = [
        ("baseline: os.listdir(/proc)", lambda: os.listdir("/proc")),
        ("baseline: ps -e", lambda: subprocess.run(["ps", "-e"], capture_output=True)),
        ("getdents64 of /proc", crossview.getdents_view),
        ("probe to 32,768 (native)", lambda: rawsys.probe_pids(1, 32768)),
        ("probe to 4,194,304 (native)", lambda: rawsys.probe_pids(1, 4194304)),
        ("probe to 32,768 (libc syscall loop)", lambda: _libc_loop(32768)),
        (f"whole survey, pid_max {crossview.pid_max()}", crossview.survey),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(args.runs):
        for name, fn in cases:
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    base = statistics.median(times[cases[0][0]])
    print(
        f"# {machine()}; {len(os.listdir('/proc'))} /proc entries; direct syscalls: "
        f"{rawsys.KERNEL_DIRECT}; median of {args.runs}"
    )
    print("| what | median s | vs os.listdir |")
    print("|---|---|---|")
    for name, _ in cases:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.4f} | {med / base:,.0f}x |")


if __name__ == "__main__":
    main()
