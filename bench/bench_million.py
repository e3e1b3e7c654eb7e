"""A million small files: time and peak RSS of collection and ``verify``, against coreutils
in the same run.

Baselines: ``cp -r`` then ``sha256sum`` over the copy (what a careful responder would do by
hand), and ``sha256sum -c SHA256SUMS`` over the evidence. Each contender runs once (a run
at this scale takes minutes); the page cache holds the source for all of them.

The tree (1,000 files a directory, 64 B - 2 KiB each, written with bare ``os.write``) is
made on ``/dev/shm`` by default: ext4 spends about 220 us on each create, which would
make the figures about the disk rather than the tool. It takes about 4 KiB of RAM per
file per copy (source, ``cp -r`` copy, evidence), so ``--files 1000000`` needs about 9 GiB
of free memory and 2.1 million free inodes on the tmpfs; the ``cp -r`` copy is removed
before ``preserve`` runs.

Usage: python bench/bench_million.py [--files N] [--workdir DIR] [--keep]"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, VERIFY, machine, timed  # noqa: E402

PER_DIR = 1000


def make_tree(src: Path, files: int) -> int:
    """``files`` small files under ``src``; returns their total size."""
    rng = random.Random(1)
    pool = os.urandom(4096)
    total = 0
    for n in range(files):
        if n % PER_DIR == 0:
            directory = src / f"d{n // PER_DIR:04d}"
            directory.mkdir(parents=True)
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        size = rng.randrange(64, 2048)
        start = rng.randrange(0, len(pool) - size)
        fd = os.open(f"f{n:07d}.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
        os.write(fd, pool[start : start + size])
        os.close(fd)
        total += size
        if n % PER_DIR == PER_DIR - 1 or n == files - 1:
            os.close(dfd)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, help="default: a new directory in /dev/shm")
    parser.add_argument("--keep", action="store_true", help="do not remove the work directory")
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench-million-", dir="/dev/shm"))
    src, copy, out = base / "src", base / "copy", base / "out"
    try:
        started = time.perf_counter()
        total = make_tree(src, args.files)
        made = time.perf_counter() - started
        print(f"machine: {machine()}")
        print(f"work directory: {base} ({_fs_type(base)})")
        print(f"tree: {args.files:,} files, {total / 1024**2:.0f} MiB, made in {made:.1f} s")
        rows: list[tuple[str, float, int | None]] = []

        hash_copy = f"cd {copy} && find . -type f -print0 | xargs -0 sha256sum >/dev/null"
        wall, _, rc = timed(["cp", "-r", src, copy, "&&", hash_copy], shell=True)
        assert rc == 0, rc
        rows.append(("cp -r + sha256sum", wall, None))
        shutil.rmtree(copy)

        wall, peak, rc = timed([*PRESERVE, "-q", "-o", out, "--only", "files", "--path", src])
        assert rc == 0, rc
        rows.append(("preserve --only files", wall, peak))
        evidence = next(out.iterdir())

        wall, _, rc = timed(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=evidence)
        assert rc == 0, rc
        rows.append(("sha256sum -c SHA256SUMS", wall, None))

        wall, peak, rc = timed([*VERIFY, "-q", evidence])
        assert rc == 0, rc
        rows.append(("verify", wall, peak))

        for name, wall, peak in rows:
            rss = f"{peak:5d} MiB" if peak is not None else "        -"
            print(f"{name:>24}: {wall:8.1f} s   peak RSS {rss}")
        t = {name: wall for name, wall, _ in rows}
        print(
            "ratios: preserve / (cp -r + sha256sum) = "
            f"{t['preserve --only files'] / t['cp -r + sha256sum']:.2f}, "
            f"verify / sha256sum -c = {t['verify'] / t['sha256sum -c SHA256SUMS']:.2f}"
        )
        peaks = {name: peak for name, _, peak in rows if peak is not None}
        print(
            f"peak RSS: preserve {peaks['preserve --only files']} MiB, "
            f"verify {peaks['verify']} MiB (target < 150 MiB each)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def _fs_type(path: Path) -> str:
    """The file system type of ``path``, from /proc/mounts (longest matching mount)."""
    best, kind = "", "unknown file system"
    real = os.path.realpath(path)
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            point = fields[1]
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(
                best
            ):
                best, kind = point, fields[2]
    except OSError:
        pass
    return kind


if __name__ == "__main__":
    main()
