"""Start-up of the frozen kit against the development install, measured in the same run.

Two commands, each timed ROUNDS times (median, warm page cache): ``preserve --version``
and a minimal collection, ``preserve --only system`` when the ``system`` collector is
installed, else ``preserve --only files --path /etc/hostname`` (which still pays for the
kit's self-check, the journal, three seals and the signed manifest). The kit run also
includes its automatic self-check (hashing every kit file); ``selfcheck`` is timed alone.
Usage: python bench/bench_kit.py [KIT_DIR] (default: dist/preserve-kit; build it first
with packaging/build-kit)."""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, ROOT, machine, timed  # noqa: E402

ROUNDS = 10


def median_time(argv: list, workdir: Path) -> float:
    times = []
    for _ in range(ROUNDS):
        wall, _, status = timed(argv, cwd=workdir)
        if status not in (0, 1):
            raise SystemExit(f"{argv} exited {status}")
        times.append(wall)
    return statistics.median(times)


def main() -> None:
    kit = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "dist" / "preserve-kit").resolve()
    if not (kit / "preserve").exists():
        raise SystemExit(f"no kit at {kit}: run packaging/build-kit first")
    from collectors.registry import load_collectors

    has_system = "system" in load_collectors(lambda n, e: None)
    work = Path(tempfile.mkdtemp(prefix="bench-kit-", dir="/var/tmp"))
    try:
        collect = (
            ["--only", "system"] if has_system else ["--only", "files", "--path", "/etc/hostname"]
        )
        label = " ".join(collect)
        rows = []
        for name, args in (
            ("--version", ["--version"]),
            (label, ["-q", "-o", work / "out", *collect]),
        ):
            dev = median_time([*PRESERVE, *args], ROOT)
            frozen = median_time([kit / "preserve", *args], work)
            rows.append((name, dev, frozen))
        check = median_time([kit / "preserve", "selfcheck"], work)
        size = sum(
            p.stat().st_size for p in kit.rglob("*") if p.is_file() and "evidence" not in p.parts
        )
        print(f"machine: {machine()}")
        print(f"kit: {kit} ({size / 1e6:.1f} MB unpacked); median of {ROUNDS} runs each")
        print(f"{'command':<42} {'dev install':>12} {'kit':>10} {'kit/dev':>8}")
        for name, dev, frozen in rows:
            ratio = frozen / dev
            print(
                f"preserve {name:<33} {dev * 1e3:>9.0f} ms {frozen * 1e3:>7.0f} ms {ratio:>7.2f}x"
            )
        print(f"{'kit selfcheck alone':<42} {'':>12} {check * 1000:>7.0f} ms")
        if not has_system:
            print("(the system collector is not installed on this branch: used --only files)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
