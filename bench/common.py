"""Helpers for benchmarks: wall time and peak RSS of a child process, machine description,
and a running ``preserve --watch``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESERVE = [sys.executable, "-c", "from agent._cli import main; main()"]
VERIFY = [sys.executable, "-c", "from agent.commands.verify import main; main()"]


def timed(
    argv: list[str | os.PathLike[str]], cwd: Path | None = None, shell: bool = False
) -> tuple[float, int, int]:
    """Run a command; return (wall seconds, peak RSS in MiB, exit status)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv if not shell else " ".join(map(str, argv)),
        cwd=cwd or ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        shell=shell,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss // 1024, proc.returncode


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def profile(path: Path, root: Path) -> Path:
    """A log profile with one source, ``root`` (a missing directory: no profile logs)."""
    path.write_text(f'version = 1\n[[source]]\nroot = "{root}"\ndescription = "bench"\n')
    return path


def start_watch(
    work: Path, name: str, d: Path, seconds: float, preserve: list[str] = PRESERVE
) -> subprocess.Popen[bytes]:
    """``preserve --json --only logs --path D --watch SECONDS`` writing to ``work/NAME-out``
    (no profile logs), returned once it watches."""
    prof = profile(work / f"{name}.toml", work / "no-such-dir")
    out = work / f"{name}-out"
    proc = subprocess.Popen(
        [*preserve, "--json", "-o", out, "--only", "logs", "--profile", prof, "--path", d,
         "--watch", str(seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not any(b"watch-started" in j.read_bytes() for j in out.glob("*/custody.jsonl")):
        time.sleep(0.05)
    return proc


def collector_durations(evidence_parent: Path) -> dict[str, float]:
    """Each collector's own time in seconds, from the ``collector`` records of the
    journal(s) of the evidence directories under ``evidence_parent``."""
    durations: dict[str, float] = {}
    for journal in evidence_parent.glob("*/custody.jsonl"):
        for line in journal.read_bytes().splitlines():
            r = json.loads(line)
            if r.get("type") == "collector":
                durations[r["name"]] = int(r["duration_ns"]) / 1e9
    return durations
