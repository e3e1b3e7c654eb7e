"""Package integrity and executable hashes against coreutils, on this machine, same run.

Contenders: ``preserve --only packages``, ``--only executables`` and both in one run
(``--only packages,executables``: the package executables' SHA-256 is taken from the
packages pass's read, collectors/rundigests.py). Baselines: ``md5sum -c`` of every
``/var/lib/dpkg/info/*.md5sums`` (what ``packages`` checks, without conffiles, report or
journal), ``sha256sum`` of the very files ``executables`` hashed (its own listing from a
warm-up run), and the sum of the two in each round. Warm page cache: a warm-up run of each
first. Rounds rotate the order; medians of wall time, and CPU time (user + system, what
a loaded shared machine cannot inflate) and peak RSS of each.
With ``BEFORE=/path/to/checkout`` that checkout's ``--only packages`` is timed too (the
figures before a change). Usage: python bench/bench_integrity.py [ROUNDS] [WORKDIR]."""

from __future__ import annotations

import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, ROOT, machine  # noqa: E402

MD5SUMS = "/var/lib/dpkg/info/*.md5sums"


def run(argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall s, CPU s (user + system), peak RSS MiB) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def preserve(
    work: Path, only: str, checkout: Path = ROOT
) -> Callable[[], tuple[float, float, int]]:
    def go() -> tuple[float, float, int]:
        out = work / f"out-{only.replace(',', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        measured = run([*PRESERVE, "-q", "-o", str(out), "--only", only], checkout)
        shutil.rmtree(out, ignore_errors=True)
        return measured

    return go


def shell(script: str) -> Callable[[], tuple[float, float, int]]:
    return lambda: run(["bash", "-c", script], cwd=Path("/"))


def listing(work: Path) -> Path:
    """The files ``--only executables`` hashes, NUL-separated, from one run of it."""
    out = work / "listing-run"
    subprocess.run([*PRESERVE, "-q", "-o", str(out), "--only", "executables"], cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    (found,) = glob.glob(str(out / "*/artifacts/executables/sha256.jsonl"))
    rows = [json.loads(line) for line in Path(found).read_text().splitlines()]
    paths = [r["path"] for r in rows if r["sha256"]]  # not what it passed over (too large)
    target = work / "executables.list"
    target.write_bytes(b"".join(os.fsencode(p) + b"\0" for p in paths))
    shutil.rmtree(out)
    return target


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; load {os.getloadavg()[0]:.1f}")
    files = listing(work)
    md5 = f"cat {MD5SUMS} | md5sum -c --quiet >/dev/null 2>&1; true"
    sha = f"xargs -0 -r sha256sum < {files} >/dev/null 2>&1; true"
    contenders: dict[str, Callable[[], tuple[float, float, int]]] = {
        "md5sum -c": shell(md5),
        "preserve --only packages": preserve(work, "packages"),
        "sha256sum": shell(sha),
        "preserve --only executables": preserve(work, "executables"),
        "preserve --only packages,executables": preserve(work, "packages,executables"),
    }
    before = os.environ.get("BEFORE")
    if before:
        # only packages: a checkout without the staging hash cap hashes every sparse
        # image other jobs left in /tmp (tens of GiB each)
        for only in ("packages",):
            contenders[f"before: --only {only}"] = preserve(work, only, Path(before))
    contenders["md5sum -c"]()  # warm the page cache (the listing run warmed the rest)
    got: dict[str, list[tuple[float, float, int]]] = {name: [] for name in contenders}
    names = list(contenders)
    for n in range(rounds):
        order = names[n % len(names) :] + names[: n % len(names)]
        for name in order if n % 2 == 0 else reversed(order):
            got[name].append(contenders[name]())
    got["md5sum -c + sha256sum"] = [
        (a[0] + b[0], a[1] + b[1], max(a[2], b[2]))
        for a, b in zip(got["md5sum -c"], got["sha256sum"], strict=True)
    ]
    med = {k: (statistics.median(w for w, _, _ in v), statistics.median(c for _, c, _ in v),
               max(r for _, _, r in v)) for k, v in got.items()}  # fmt: skip
    print(f"load after: {os.getloadavg()[0]:.1f}; {rounds} rounds, medians")
    for name, (wall, cpu, rss) in med.items():
        runs = ", ".join(f"{w:.2f}" for w, _, _ in got[name])
        print(f"{name:>38}: {wall:6.2f} s wall ({runs}), {cpu:6.2f} s CPU, {rss} MiB")
    for ours, theirs in (
        ("preserve --only packages", "md5sum -c"),
        ("preserve --only executables", "sha256sum"),
        ("preserve --only packages,executables", "md5sum -c + sha256sum"),
    ):
        print(f"{ours} / {theirs}: wall {med[ours][0] / med[theirs][0]:.2f}, "
              f"CPU {med[ours][1] / med[theirs][1]:.2f}")  # fmt: skip
    if len(sys.argv) <= 2:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
