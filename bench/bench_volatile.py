"""Benchmark: the volatile snapshot on a busy host, against the shell a responder would type.

Starts 1,000 extra sleeping processes and holds 500 open TCP sockets (250 loopback
connections, both ends), then, alternating, runs

- ``preserve --only processes,network,system`` (whole command, wall clock), and reads
  the in-tool ``snapshot`` event (processes + sockets, monotonic clock) from the journal;
- the baseline ``ps auxww; ss -tanup; ip route; ip neigh`` (output to /dev/null).

Everything it starts is stopped and its temporary directory removed at the end.
Usage: ``python bench/bench_volatile.py [--procs 1000] [--conns 250] [--runs 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import PRESERVE, machine  # noqa: E402

BASELINE = "ps auxww; ss -tanup; ip route; ip neigh"


def start_sleepers(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["sleep", "3600"]) for _ in range(n)]


def open_sockets(conns: int) -> list[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(conns)
    held = [server]
    for _ in range(conns):
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        held += [client, accepted]
    return held


def run_preserve(out: Path) -> tuple[float, int, int, int]:
    began = time.perf_counter()
    proc = subprocess.run(
        [
            *PRESERVE,
            "--json",
            "-o",
            str(out),
            "--only",
            "processes,network,system",
        ],
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    wall = time.perf_counter() - began
    summary = json.loads(proc.stdout)
    evidence = Path(summary["evidence_dir"])
    snap = next(
        json.loads(line)
        for line in (evidence / "custody.jsonl").read_bytes().splitlines()
        if b'"event":"snapshot"' in line
    )
    shutil.rmtree(evidence)
    return wall, int(snap["duration_ns"]), snap["processes"], snap["sockets"]


def run_baseline() -> float:
    began = time.perf_counter()
    subprocess.run(
        ["sh", "-c", BASELINE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=1000)
    parser.add_argument("--conns", type=int, default=250, help="connections (2 sockets each)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-volatile-"))
    sleepers: list[subprocess.Popen] = []
    held: list[socket.socket] = []
    try:
        sleepers = start_sleepers(args.procs)
        held = open_sockets(args.conns)
        time.sleep(0.5)
        walls, snaps, bases = [], [], []
        counts = (0, 0)
        for _ in range(args.runs):
            wall, snap_ns, nproc, nsock = run_preserve(tmp)
            walls.append(wall)
            snaps.append(snap_ns / 1e9)
            counts = (nproc, nsock)
            bases.append(run_baseline())
        med = statistics.median
        load = os.getloadavg()[0]
        print(f"machine: {machine()}; load average {load:.1f} during the run")
        print(
            f"host load: {counts[0]} processes, {counts[1]} sockets in the snapshot "
            f"({args.procs} extra sleepers, {len(held) - 1} extra TCP sockets)"
        )
        print(
            f"in-tool snapshot (processes+sockets): median {med(snaps):.3f} s, "
            f"max {max(snaps):.3f} s (target < 1.0 s)"
        )
        print(f"preserve --only processes,network,system: median {med(walls):.3f} s")
        print(f"baseline '{BASELINE}': median {med(bases):.3f} s")
        print(
            f"ratio preserve/baseline: {med(walls) / med(bases):.2f}x; "
            f"snapshot/baseline: {med(snaps) / med(bases):.2f}x"
        )
    finally:
        for s in held:
            s.close()
        for p in sleepers:
            p.kill()
        for p in sleepers:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
