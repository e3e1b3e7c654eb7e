"""The E01 writer against ``ewfacquire`` (Debian's ewf-tools), same input, same run.

Inputs: a disk-like ext4 file system (``mkfs.ext4 -d``: random, text and log files, the
rest never written) and an all-random file (nothing compresses: the worst case). Both
writers make EnCase 6 E01 with fast deflate, MD5 and SHA-1, one segment file; the page
cache is warm for each (the input is read once before timing), rounds interleaved.
Every output is checked by ``ewfverify`` after timing.

Usage: python bench/bench_ewf.py [WORKDIR] [--disk-gib N] [--random-mib N] [--rounds N]
       [--preserve-image]   (also time ``preserve image --format e01``, once it exists)"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, ROOT, machine  # noqa: E402

Argv = list[str | os.PathLike[str]]

# The writer fed by plain reads of 4 MiB, as ``preserve image`` feeds it.
DRIVER = """
import os, sys
from agent.imaging.ewf import CaseMetadata, EwfWriter
src, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(src, os.O_RDONLY)
size = os.lseek(fd, 0, os.SEEK_END)
os.lseek(fd, 0, os.SEEK_SET)
w = EwfWriter(lambda n: open(os.path.join(out, n), "xb"), size,
              CaseMetadata(case_number="bench", examiner="bench"), workers=workers)
while data := os.read(fd, 4 << 20):
    w.write(data)
w.close()
"""


def make_disk(path: Path, gib: int) -> None:
    """An ext4 image with ~30% of it used: random (photos, archives), text and logs."""
    tree = path.with_name("disk-tree")
    shutil.rmtree(tree, ignore_errors=True)
    rng = random.Random(1)
    budget = gib * 1024**3 * 3 // 10
    n = 0
    while budget > 0:
        size = min(budget, rng.randrange(1, 48) * 1024**2)
        d = tree / f"d{n // 50}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"f{n}", "wb") as f:
            if n % 3 == 0:
                f.write(os.urandom(size))
            else:
                line = b"Dec  1 10:%02d:%02d host sshd[%d]: Accepted publickey for user%d\n"
                block = b"".join(line % (i % 60, i % 59, i, i % 97) for i in range(16384))
                for _ in range(size // len(block)):
                    f.write(block)
        budget -= size
        n += 1
    with path.open("wb") as f:
        f.truncate(gib * 1024**3)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, path], check=True)
    shutil.rmtree(tree)


def timed_hwm(argv: Argv) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MiB, exit status). The peak is the child's own VmHWM,
    polled: ``wait4``'s ru_maxrss also counts the parent's pages at fork time."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
            peak = max(peak, int(hwm.split()[1]) // 1024)
        except (OSError, StopIteration):
            pass
        time.sleep(0.02)
    return time.perf_counter() - started, peak, proc.returncode


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(16 << 20):
            pass


def contenders(src: Path, out: Path, with_preserve: bool) -> dict[str, Argv]:
    runs: dict[str, Argv] = {
        "ewfacquire": ["ewfacquire", "-u", "-q", "-f", "encase6", "-c", "deflate:fast",
                       "-d", "sha1", "-S", "7EiB", "-t", out / "acq", src],
        "writer, 2 threads": [sys.executable, "-c", DRIVER, src, out, "2"],
        "writer, 1 thread": [sys.executable, "-c", DRIVER, src, out, "1"],
    }  # fmt: skip
    if with_preserve:
        runs["preserve image --format e01"] = [
            *PRESERVE, "image", src, "-o", out, "--format", "e01", "--case", "bench",
            "--examiner", "bench", "--quiet",
        ]  # fmt: skip
    return runs


def attach(path: Path) -> str:
    """A read-only loop device over ``path`` (root only), as a real disk is imaged."""
    done = subprocess.run(["losetup", "-f", "--show", "-r", path], capture_output=True, text=True)
    done.check_returncode()
    return done.stdout.strip()


def first_segment(out: Path) -> Path:
    return next(p for p in out.rglob("*.E01"))


def bench(image: Path, work: Path, rounds: int, with_preserve: bool) -> None:
    src = Path(attach(image)) if os.geteuid() == 0 else image
    try:
        run_rounds(src, image.name, image.stat().st_size, work, rounds, with_preserve)
    finally:
        if src != image:
            subprocess.run(["losetup", "-d", src], check=False)


def run_rounds(
    src: Path, label: str, size: int, work: Path, rounds: int, with_preserve: bool
) -> None:
    warm(src)
    times: dict[str, list[float]] = {}
    stored: dict[str, int] = {}
    rss: dict[str, int] = {}
    for _ in range(rounds):
        for name, argv in contenders(src, work / "OUT", with_preserve).items():
            out = work / "OUT"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            wall, peak, status = timed_hwm(argv)
            assert status == 0, (name, status)
            check = subprocess.run(["ewfverify", "-q", first_segment(out)], capture_output=True)
            assert check.returncode == 0, (name, check.stdout)
            times.setdefault(name, []).append(wall)
            stored[name] = sum(p.stat().st_size for p in out.rglob("*.E[0-9A-Z][0-9A-Z]"))
            rss[name] = max(rss.get(name, 0), peak)
    base = statistics.median(times["ewfacquire"])
    print(f"\ninput: {label} on {src}, {size / 1024**2:.0f} MiB; {rounds} rounds, median")
    print("| writer | time | ratio to ewfacquire | MB/s | E01 size | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, walls in times.items():
        t = statistics.median(walls)
        print(
            f"| {name} | {t:.2f} s | {t / base:.2f} | {size / t / 1e6:.0f} | "
            f"{stored[name] / size * 100:.1f}% | {rss[name]} MiB |"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", nargs="?")
    ap.add_argument("--disk-gib", type=int, default=2)
    ap.add_argument("--random-mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--preserve-image", action="store_true")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    try:
        disk = work / "disk.img"
        make_disk(disk, args.disk_gib)
        bench(disk, work, args.rounds, args.preserve_image)
        disk.unlink()
        noise = work / "random.img"
        with noise.open("wb") as f:
            for _ in range(args.random_mib):
                f.write(os.urandom(1024**2))
        bench(noise, work, args.rounds, args.preserve_image)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
