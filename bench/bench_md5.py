"""MD5 of this host's dpkg files: the lanes engine (collectors/lanedigest.py) against
``md5sum`` (``xargs -P2`` over the same file list, the coreutils way on two cores) and
against hashlib (filedigest's thread pool), same files, same run; then the packages
collector alone (``preserve --only packages``) with each engine, its own time from the
journal (and the CPU of the whole run). Rounds alternate the order; medians are printed,
wall with ratios to md5sum, and CPU (user + system, all threads or children).

Usage: python bench/bench_md5.py [ROUNDS] [ENGINE ...]  (engines: the best one and hashlib
by default; any of avx512, avx2, scalar, hashlib)."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import PRESERVE, ROOT, collector_durations, machine, timed  # noqa: E402

from collectors.filedigest import Want, digest_files  # noqa: E402
from collectors.lanedigest import available, digest_lanes  # noqa: E402

INFO = Path("/var/lib/dpkg/info")


def dpkg_files() -> list[bytes]:
    """Every file dpkg recorded an MD5 for, that is a regular file here."""
    paths: list[bytes] = []
    for sums in sorted(INFO.glob("*.md5sums")):
        for line in sums.read_bytes().splitlines():
            _, _, rel = line.partition(b"  ")
            path = b"/" + rel
            if rel and os.path.isfile(path) and not os.path.islink(path):
                paths.append(path)
    return sorted(set(paths))


def in_process(engine: str, paths: list[bytes]) -> tuple[float, float]:
    items = [(p, Want(p, ("md5",))) for p in paths]
    started, cpu = time.perf_counter(), time.process_time()
    if engine == "hashlib":
        done = sum(1 for _ in digest_files(items))
    else:
        done = sum(1 for _ in digest_lanes(items, None, engine))
    assert done == len(paths)
    return time.perf_counter() - started, time.process_time() - cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def md5sum(listing: Path) -> tuple[float, float]:
    cpu = children_cpu()
    wall, _, status = timed(
        ["xargs", "-0", "-P2", "-n", "2000", "md5sum", "<", listing, ">", "/dev/null"], shell=True
    )
    assert status == 0, status
    return wall, children_cpu() - cpu


def packages(engine: str, scratch: Path) -> tuple[float, float]:
    """The packages collector's own time (from the journal), and the whole run's CPU."""
    out = scratch / f"pk-{engine}"
    env = {**os.environ, "PRESERVE_MD5_ENGINE": engine}
    cpu = children_cpu()
    subprocess.run(
        [*PRESERVE, "-q", "-o", out, "--only", "packages"],
        cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    took = collector_durations(out).get("packages", float("nan"))
    subprocess.run(["rm", "-rf", str(out)], check=False)
    return took, children_cpu() - cpu


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    engines = sys.argv[2:] or [available()[0], "hashlib"]
    paths = dpkg_files()
    size = sum(os.stat(p).st_size for p in paths)
    print(machine())
    print(f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; engines here: {available()}")
    print(f"{len(paths)} dpkg files, {size / 1e9:.2f} GB")
    with tempfile.TemporaryDirectory(prefix="bench-md5-") as tmp:
        scratch = Path(tmp)
        listing = scratch / "files0"
        listing.write_bytes(b"".join(p + b"\0" for p in paths))
        md5sum(listing)  # warm the page cache: every side reads from memory
        times: dict[str, list[tuple[float, float]]] = {"md5sum": []}
        for r in range(rounds):
            order = ["md5sum", *engines] if r % 2 == 0 else [*reversed(engines), "md5sum"]
            for side in order:
                took = md5sum(listing) if side == "md5sum" else in_process(side, paths)
                times.setdefault(side, []).append(took)
            for engine in engines if r % 2 == 0 else reversed(engines):
                times.setdefault(f"packages {engine}", []).append(packages(engine, scratch))
        base = statistics.median(w for w, _ in times["md5sum"])
        for side, values in times.items():
            median = statistics.median(w for w, _ in values)
            cpu = statistics.median(c for _, c in values)
            print(
                f"{side:>20}: {median:6.2f} s  {size / median / 1e9:5.2f} GB/s  "
                f"{median / base:5.2f}x md5sum  CPU {cpu:5.2f} s"
                f"  (rounds {', '.join(f'{w:.2f}' for w, _ in values)})"
            )
    print(f"load after {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
