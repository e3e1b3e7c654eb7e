"""Start-up of the frozen kit against the development install, measured in the same run.

Two commands, each timed ROUNDS times (median, warm page cache): ``preserve --version``
and a minimal collection, ``preserve --only system`` when the ``system`` collector is
installed, else ``preserve --only files --path /etc/hostname`` (which still pays for the
kit's self-check, the journal, three seals and the signed manifest), plus
``preserve selfcheck`` (the dev install checks the kit with ``--kit``). The kit's
collection includes its automatic self-check. Dev and kit runs alternate, so both see
the same load on a shared machine; wall and CPU (user+sys) medians are reported.
Usage: python bench/bench_kit.py [KIT_DIR [BASELINE_KIT_DIR]] (default: dist/preserve-kit;
build it first with packaging/build-kit). With a second kit (e.g. one built from an older
commit), the same three commands are also timed against it, alternating, as "before"."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, ROOT, machine  # noqa: E402

ROUNDS = 15


def run_once(argv: list, workdir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys of the process and its children)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{argv} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def compare(dev: list, kit: list, workdir: Path) -> tuple[tuple[float, float], ...]:
    """Alternate the two contenders each round so both see the same machine load;
    returns (median wall, median CPU) for dev and for the kit."""
    results: dict[str, list[tuple[float, float]]] = {"dev": [], "kit": []}
    for _ in range(ROUNDS):
        results["dev"].append(run_once(dev, ROOT))
        results["kit"].append(run_once(kit, workdir))
    return tuple(
        (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for r in results.values()
    )


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
            dev, frozen = compare([*PRESERVE, *args], [kit / "preserve", *args], work)
            rows.append((name, dev, frozen))
        check = compare(
            [*PRESERVE, "selfcheck", "--kit", kit], [kit / "preserve", "selfcheck"], work
        )
        size = sum(
            p.stat().st_size for p in kit.rglob("*") if p.is_file() and "evidence" not in p.parts
        )
        print(f"machine: {machine()}")
        print(f"kit: {kit} ({size / 1e6:.1f} MB unpacked); median of {ROUNDS} alternating runs")
        print(
            f"{'command':<44} {'dev wall':>9} {'kit wall':>9} {'ratio':>6}"
            f" {'dev cpu':>8} {'kit cpu':>8} {'ratio':>6}"
        )
        for name, (dw, dc), (kw, kc) in [*rows, ("selfcheck", *check)]:
            print(
                f"preserve {name:<35} {dw * 1e3:>6.0f} ms {kw * 1e3:>6.0f} ms {kw / dw:>5.2f}x"
                f" {dc * 1e3:>5.0f} ms {kc * 1e3:>5.0f} ms {kc / dc:>5.2f}x"
            )
        if len(sys.argv) > 2:
            _against_baseline(kit, Path(sys.argv[2]).resolve(), collect, work)
        if not has_system:
            print("(the system collector is not installed on this branch: used --only files)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _against_baseline(kit: Path, old: Path, collect: list, work: Path) -> None:
    """This kit against an older build, in the same run: start-up before/after."""
    print(f"baseline kit: {old}")
    print(f"{'command':<44} {'before':>9} {'after':>9} {'ratio':>6} {'cpu bef':>8} {'cpu aft':>8}")
    for name, args in (
        ("--version", ["--version"]),
        (" ".join(collect), ["-q", "-o", work / "out", *collect]),
        ("selfcheck", ["selfcheck"]),
    ):
        (bw, bc), (aw, ac) = compare([old / "preserve", *args], [kit / "preserve", *args], work)
        print(
            f"preserve {name:<35} {bw * 1e3:>6.0f} ms {aw * 1e3:>6.0f} ms {aw / bw:>5.2f}x"
            f" {bc * 1e3:>5.0f} ms {ac * 1e3:>5.0f} ms"
        )


if __name__ == "__main__":
    main()
