"""Benchmark: what the ``kernel`` collector and the memory of a flagged process cost,
each against a baseline measured in the same run.

- ``kernel`` (modules in two views, taint, the eBPF ID walk with fdinfo owners, the raw
  and libc reads of ld.so.preload) against ``processes`` (the volatile snapshot it runs
  beside), both driven through the collector contract into a scratch evidence directory;
- ``procfiles`` (every process's maps and descriptor table) against ``processes`` too;
- ``procmem`` on one process with ``--size`` MiB of touched heap (a C program built
  here, started from /tmp so it is flagged) against reading the same mappings from
  ``/proc/PID/mem``, writing them to a file on the same disk and hashing them (the work
  itself, without the journal); the read alone is printed too.

Rounds alternate (baseline, measured, baseline, ...). Memory is read from this process's
own child only: nothing else on the machine is read.
Usage: ``python bench/bench_kernel.py [--runs 5] [--size 100]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from common import machine  # noqa: E402
from suspects import build_secret, start  # noqa: E402

from collectors import fdtable  # noqa: E402
from collectors.context import CollectContext, Options  # noqa: E402
from collectors.copy import CopyEngine  # noqa: E402
from collectors.kernel import KernelCollector  # noqa: E402
from collectors.processes import ProcessesCollector  # noqa: E402
from collectors.procfiles import ProcFilesCollector  # noqa: E402
from collectors.procmem import ProcMemCollector  # noqa: E402
from manifests.signing import Signer  # noqa: E402
from manifests.writer import EvidenceWriter  # noqa: E402


class _Log:
    def info(self, *a: object, **k: object) -> None: ...

    warning = info


def _in_context(work: Path, step: Callable[[CollectContext], None]) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    writer = EvidenceWriter.create(out, "e", Signer.generate_ephemeral())
    engine = CopyEngine(writer)
    ctx = CollectContext(writer.root, writer.journal, engine, Options(), log=_Log())
    try:
        began = time.perf_counter()
        step(ctx)
        engine.drain()
        return time.perf_counter() - began
    finally:
        engine.shutdown()
        writer.journal.close()
        shutil.rmtree(out)


def _raw_copy(pid: int, work: Path | None) -> None:
    """Read every readable mapping from /proc/PID/mem; with ``work``, also write it to a
    file there and SHA-256 it (what ``dd | tee FILE | sha256sum`` would do)."""
    h = hashlib.sha256()
    out = open(work / "raw.mem", "wb") if work else None  # noqa: SIM115
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for m in fdtable.read_maps(pid):
            at = m.start
            while "r" in m.perms and at < m.end:
                try:
                    data = os.pread(fd, min(1 << 20, m.end - at), at)
                except OSError:
                    break
                if out is not None:
                    out.write(data)
                    h.update(data)
                at += len(data) or (m.end - at)
    finally:
        os.close(fd)
        if out is not None:
            out.close()
            (work / "raw.mem").unlink()  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=100, help="MiB of heap in the process")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-kernel-", dir="/tmp"))
    exe = build_secret(work)
    proc = start([str(exe), "BENCH", str(args.size << 20)])
    index = {proc.pid: {"pid": proc.pid, "name": "secret", "flags": [{"flag": "exe_deleted"}]}}

    def memory(ctx: CollectContext) -> None:
        ctx.shared["process_index"] = index
        ProcMemCollector().collect(ctx)

    cases: dict[str, Callable[[], float]] = {
        "processes (baseline)": lambda: _in_context(work, ProcessesCollector().collect),
        "kernel": lambda: _in_context(work, KernelCollector().collect),
        "processes (baseline) ": lambda: _in_context(work, ProcessesCollector().collect),
        "procfiles (all processes' maps and fds)": lambda: _in_context(
            work, ProcFilesCollector().collect
        ),
        f"read, write and hash {args.size} MiB of memory (baseline)": lambda: _timed(
            lambda: _raw_copy(proc.pid, work)
        ),
        f"procmem of {args.size} MiB process": lambda: _in_context(work, memory),
    }  # fmt: skip
    pairs = list(cases)
    cases["read only"] = lambda: _timed(lambda: _raw_copy(proc.pid, None))
    times: dict[str, list[float]] = {k: [] for k in cases}
    try:
        for _ in range(args.runs):
            for name, case in cases.items():
                times[name].append(case())
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work)
    med = {k: statistics.median(v) for k, v in times.items()}
    names = pairs
    print(f"machine: {machine()}; {args.runs} alternating rounds, medians")
    print("| case | median | ratio to its baseline |")
    print("|---|---|---|")
    for i, name in enumerate(names):
        base = med[names[i - i % 2]]
        print(f"| {name} | {med[name] * 1000:.1f} ms | {med[name] / base:.2f} |")
    print(
        f"(reading the {args.size} MiB alone, no write or hash: {med['read only'] * 1000:.1f} ms)"
    )


def _timed(step: Callable[[], None]) -> float:
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
