"""``preserve image`` against ``dd bs=4M`` + ``sha256sum`` of the same loop device, in
the same run, rounds interleaved.

The device: a loop device (read-only) over a file of random data (2 GiB by default),
made here and detached at the end; the file is read once first, so every contender reads
from a warm page cache (the comparison is of the work each does, not of the disk). Both
write their image to WORKDIR. The baseline is what an examiner types without a forensic
tool: ``dd if=DEV of=image.raw bs=4M`` then ``sha256sum DEV`` (the hash of the source,
so a second read). ``preserve image`` reads once and hashes twice in that pass (the whole
image and each 64 MiB piece), journals, fsyncs and signs.
Usage: python bench/bench_image.py [WORKDIR] [--size GIB] [--rounds N] (root: losetup)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, machine, timed  # noqa: E402

BLOCK = 4 * 1024 * 1024


def make_backing(path: Path, size: int) -> None:
    block = os.urandom(BLOCK)
    with open(path, "wb") as f:
        for n in range(size // BLOCK):
            # Each block different, cheaply: a counter in front of the same random bytes.
            f.write(n.to_bytes(8, "little") + block[8:])
    with open(path, "rb") as f:  # warm the page cache once, for everyone
        while f.read(BLOCK):
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--size", type=float, default=2.0, help="GiB (default 2)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(dir="/var/tmp", prefix="bench-image-"))
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size * 1024**3) // BLOCK * BLOCK
    backing = work / "disk.img"
    make_backing(backing, size)
    argv = ["losetup", "-f", "--show", "-r", str(backing)]
    device = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    print(f"machine: {machine()}")
    print(f"device: {device} over {size / 1024**3:.2f} GiB of data (warm page cache)")
    times: dict[str, list[float]] = {"dd+sha256sum": [], "preserve image": []}
    rss: dict[str, int] = {"preserve image": 0}
    try:
        for _ in range(args.rounds):
            dd = work / "dd.raw"
            baseline = f"dd if={device} of={dd} bs=4M status=none && sha256sum {device}"
            wall, _, status = timed(["sh", "-c", baseline])
            assert status == 0, "dd or sha256sum failed"
            times["dd+sha256sum"].append(wall)
            dd.unlink()
            out = work / "out"
            wall, peak, status = timed([*PRESERVE, "image", device, "-q", "-o", out])
            assert status == 0, "preserve image failed"
            times["preserve image"].append(wall)
            rss["preserve image"] = max(rss["preserve image"], peak)
            shutil.rmtree(out)
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
    base = statistics.median(times["dd+sha256sum"])
    gib = size / 1024**3
    print(f"{'command':<16} {'median s':>9} {'GiB/s':>6} {'ratio':>6} {'peak RSS':>9}")
    for name, runs in times.items():
        t = statistics.median(runs)
        peak = f"{rss[name]} MiB" if name in rss else "-"
        print(f"{name:<16} {t:>9.2f} {gib / t:>6.2f} {t / base:>6.2f} {peak:>9}")
    print("rounds:", {k: [round(x, 2) for x in v] for k, v in times.items()})
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
