"""Each profile's time, peak RSS and evidence size on this machine, and what the
collectors that read the whole host (``timeline``, ``packages``, ``executables``, in the
default profile since issue 14) add to it. Times are against ``minimal`` measured in the
same run, rounds interleaved.

    .venv/bin/python bench/bench_profiles.py [--rounds N] [--full]

``--full`` adds ``--profile full``."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import PRESERVE, machine, timed

RUNS = {
    "minimal": ["--profile", "minimal"],
    "standard (default)": [],
    "standard without timeline, packages, executables": [
        "--skip",
        "timeline,packages,executables",
    ],
    "only timeline": ["--only", "timeline"],
    "only persistence": ["--only", "persistence"],
    "only accounts": ["--only", "accounts"],
}
FULL = {"full": ["--profile", "full"]}


def _size(path: Path) -> int:
    """Bytes under ``path`` (``du``: a copied tree may be deeper than PATH_MAX)."""
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def _one(args: list[str]) -> tuple[float, int, int, int]:
    """(wall s, peak RSS MiB, evidence bytes, journal records) of one collection."""
    out = Path(tempfile.mkdtemp(prefix="bench-profiles-"))
    try:
        wall, rss, status = timed(
            [*PRESERVE, "-q", "-o", str(out), "--max-file-size", "64M", *args]
        )
        assert status in (0, 1), (args, status)
        (evidence,) = list(out.iterdir())
        lines = (evidence / "custody.jsonl").read_bytes().count(b"\n")
        return wall, rss, _size(evidence), lines
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--full", action="store_true")
    opts = parser.parse_args()
    runs = {**RUNS, **(FULL if opts.full else {})}
    results: dict[str, list[tuple[float, int, int, int]]] = {k: [] for k in runs}
    for _ in range(opts.rounds):
        for name, args in runs.items():
            results[name].append(_one(args))
    base = min(r[0] for r in results[next(iter(RUNS))])
    print(f"machine: {machine()}")
    load = subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True).stdout
    print(f"load: {load.strip()}; rounds: {opts.rounds} (best time shown)")
    print("| run | time | ratio | peak RSS | evidence | journal records |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        wall, rss, size, lines = min(rows)
        print(
            f"| {name} | {wall:.1f} s | {wall / base:.2f} | {rss} MiB | "
            f"{size / 1024**2:.1f} MiB | {lines} |"
        )


if __name__ == "__main__":
    main()
