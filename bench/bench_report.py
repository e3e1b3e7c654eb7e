"""Report and export time against ``verify`` on the same evidence, measured in the same run.

A report always runs the full verification first, so ``verify`` is its floor; the ratio
says what reading the journal, the findings, the timeline and rendering add on top.
Tree: 20,000 small files (plus the journal's records for them), collected once.
Usage: python bench/bench_report.py [WORKDIR] (default: a directory under /var/tmp)."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, VERIFY, machine, timed  # noqa: E402

FILES = 20_000
ROUNDS = 3


def main() -> None:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(dir="/var/tmp"))
    src = base / "src"
    pool = os.urandom(8192)
    for n in range(FILES):
        d = src / f"d{n // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n:05d}.log").write_bytes(pool[: 256 + n % 4096])
    out = base / "out"
    wall, _, rc = timed([*PRESERVE, "-q", "-o", out, "--only", "files", "--path", src])
    assert rc == 0, rc
    evidence = next(out.iterdir())
    print(f"machine: {machine()}")
    print(f"evidence: {FILES} files, collected in {wall:.2f} s")
    runs = {
        "verify": [*VERIFY, "-q", evidence],
        "report md": [*PRESERVE, "report", evidence, "--format", "md", "-o", base / "r.md"],
        "report html": [*PRESERVE, "report", evidence, "--format", "html", "-o", base / "r.html"],
        "report json": [*PRESERVE, "report", evidence, "--format", "json", "-o", base / "r.json"],
        "export case": [*PRESERVE, "export", evidence, "--format", "case", "-o", base / "c.jsonld"],
        "export bodyfile": [
            *PRESERVE,
            "export",
            evidence,
            "--format",
            "bodyfile",
            "-o",
            base / "b",
        ],
        "export hashdeep": [
            *PRESERVE,
            "export",
            evidence,
            "--format",
            "hashdeep",
            "-o",
            base / "h",
        ],
    }
    med: dict[str, float] = {}
    for name, argv in runs.items():
        times, peak = [], 0
        for _ in range(ROUNDS):
            t, rss, rc = timed(argv)
            assert rc == 0, (name, rc)
            times.append(t)
            peak = max(peak, rss)
        med[name] = statistics.median(times)
        ratio = med[name] / med["verify"]
        print(f"{name:>16}: {med[name]:6.2f} s  ({ratio:4.2f} x verify)  peak RSS {peak} MiB")
    sizes = {p.name: p.stat().st_size for p in base.iterdir() if p.is_file()}
    print("output sizes: " + ", ".join(f"{k} {v // 1024} KiB" for k, v in sorted(sizes.items())))
    if len(sys.argv) <= 1:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
