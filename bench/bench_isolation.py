#!/usr/bin/env python3
"""Time from command start to the network cut in force, measured from outside.

A prober in the ``other`` namespace sends a UDP datagram to the host's echo server every
2 ms and notes the wall time of the last echo it got. The time from spawning the command
to that last echo is how long the host stayed reachable. Baseline, measured in the same
run: ``nft -f`` of the very same ruleset, spawned the same way (the floor any nftables
tool can reach). Needs root; builds and deletes its own network namespaces.

    sudo .venv/bin/python bench/bench_isolation.py [RUNS] [--shared-disk] [--files-only]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from conftest import PRESERVE_ARGV  # noqa: E402
from netns_topology import PORT, Topology  # noqa: E402

PROBER = r"""
import socket, sys, time, select
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
last = 0
first = True
stop = time.monotonic() + float(sys.argv[3])
while time.monotonic() < stop:
    try:
        s.sendto(b"p", (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    r, _, _ = select.select([s], [], [], 0.002)
    if r:
        try:
            s.recv(16)
            last = time.time_ns()
            if first:
                print("up", flush=True); first = False
        except OSError:
            pass
print(last, flush=True)
"""


def measure(
    topo: Topology, argv: list[str], window: float = 4.0
) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    prober = subprocess.Popen(
        ["ip", "netns", "exec", topo.ns["other"], sys.executable, "-c", PROBER,
         "10.231.2.1", str(PORT + 1), str(window)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert prober.stdout is not None
    line = prober.stdout.readline().strip()
    assert line == b"up", line
    t0 = time.time_ns()
    done = subprocess.run(
        ["ip", "netns", "exec", topo.ns["host"], *argv], capture_output=True, cwd=ROOT, timeout=60
    )
    last = int(prober.stdout.readline())
    prober.wait(timeout=10)
    return (last - t0) // 1_000_000, done


def _ms_between(a: str, b: str) -> int:
    def ns(stamp: str) -> int:
        whole, frac = stamp.rstrip("Z").split(".")
        return int(datetime.fromisoformat(whole + "+00:00").timestamp()) * 10**9 + int(frac)

    return (ns(b) - ns(a)) // 1_000_000


def main() -> None:
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    # The order: volatile snapshot, seal, cut. --files-only measures the cut alone.
    only = "files" if "--files-only" in sys.argv else "processes,network,files"
    runs = int(numbers[0]) if numbers else 5
    topo = Topology()
    # The kit's drive holds only this run's writes; the root file system here is shared
    # with other busy processes, and each seal syncs the whole output file system. A
    # tmpfs (/dev/shm) stands in for the dedicated drive; --shared-disk uses /tmp.
    shared = "--shared-disk" in sys.argv
    kit = None if shared or not Path("/dev/shm").is_dir() else "/dev/shm"
    tmp = Path(tempfile.mkdtemp(prefix="pv5-bench-", dir=kit))
    # An installed kit has byte-compiled modules (pip compiles them at install time).
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "agent", "collectors", "manifests"],
        cwd=ROOT,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        (tmp / "src").mkdir()
        (tmp / "src" / "a").write_text("x")
        cli = PRESERVE_ARGV
        dry = subprocess.run(
            ["ip", "netns", "exec", topo.ns["host"], *cli, "--isolate", "--dry-run", "--json",
             "--allow", "10.231.1.2"],
            capture_output=True, cwd=ROOT, check=True,
        )  # fmt: skip
        ruleset = json.loads(dry.stdout)["plan"]["apply"][0]["stdin"]
        (tmp / "rules.nft").write_text(ruleset)
        tool, base, reported, step, imports = [], [], [], [], []
        for i in range(runs):
            out = tmp / f"out{i}"
            argv = [*cli, "--json", "-o", str(out), "--only", only, "--path", str(tmp / "src")]
            ms, done = measure(topo, [*argv, "--isolate", "--allow", "10.231.1.2"])
            summary = json.loads(done.stdout)
            assert summary["isolation"]["status"] == "in-force", done.stderr
            tool.append(ms)
            reported.append(summary["isolation"]["cut_after_ms"])
            records = [
                json.loads(x) for x in (Path(summary["evidence_dir"]) / "custody.jsonl").open()
            ]
            applied = next(r for r in records if r.get("action") == "isolation-applied")
            step.append(_ms_between(records[0]["time"], applied["cut_at"]))
            topo.ex("host", *cli, "release", "-o", str(out))
            ms, done = measure(topo, ["nft", "-f", str(tmp / "rules.nft")])
            assert done.returncode == 0, done.stderr
            base.append(ms)
            topo.ex("host", "nft", "delete", "table", "inet", "preserve_isolation")
            began = time.monotonic_ns()
            topo.ex("host", sys.executable, "-c", "import agent.commands.group")
            imports.append((time.monotonic_ns() - began) // 1_000_000)
        med_tool, med_base = statistics.median(tool), statistics.median(base)
        print(f"runs: {runs}, collectors: {only}, output on {'root fs' if shared else 'tmpfs'}")
        print(f"preserve --isolate, spawn to cut (from outside), ms: {tool}  median {med_tool:.0f}")
        print(f"preserve's own cut_after_ms (process start to nft done): {reported}")
        print(f"of which journal start record to nft done (snapshot + cut), ms: {step}")
        print(f"baseline nft -f same ruleset, spawn to cut, ms: {base}  median {med_base:.0f}")
        med_imports = statistics.median(imports)
        print(f"python start + imports of the CLI alone, ms: {imports}  median {med_imports:.0f}")
        print(f"ratio preserve/baseline: {med_tool / max(med_base, 1):.1f}x")
        print(f"limit 2000 ms: {'met' if max(tool) < 2000 else 'MISSED'} (worst {max(tool)} ms)")
    finally:
        topo.close()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
