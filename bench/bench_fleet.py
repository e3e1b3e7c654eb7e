"""The fleet run of N namespace hosts (tests/fleet_harness.py): the real
``ansible-playbook packaging/ansible/preserve-fleet.yml`` pushing the kit into each
host's /dev/shm and streaming ``preserve --only system`` to the drop-box.

    sudo .venv/bin/python bench/bench_fleet.py --kit DIR [--hosts 20] [--forks 20]
        [--max-startups N]

``--max-startups``: the evidence server's sshd ``MaxStartups`` (a busy or strict
server: connections beyond N waiting to log in are dropped), to count the hosts that
still get through.

Baseline, in the same run: the same playbook against one host. Prints wall time and the
controller's CPU (ansible-playbook and its ssh children) for both, and the per-host cost
of the fleet against the single host."""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import machine  # noqa: E402
from fleet_harness import Fleet  # noqa: E402


def one_run(
    fleet: Fleet, kit: Path, names: list[str], work: Path, forks: int
) -> tuple[float, float, int]:
    """(wall seconds, controller CPU seconds, hosts collected)."""
    summary = work / f"fleet-{len(names)}-{time.monotonic_ns()}.csv"
    extra = {**fleet.extra_vars(kit, summary), "preserve_hosts": ",".join(names)}
    inventory = fleet.inventory(group_vars={"preserve_args": "--only system"})
    argv = fleet.playbook_argv(inventory, extra)
    argv[argv.index("-f") + 1] = str(forks)
    started = time.perf_counter()
    pid = os.spawnvp(os.P_NOWAIT, argv[0], argv)
    _, _, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    rows = list(csv.DictReader(summary.open())) if summary.exists() else []
    return wall, usage.ru_utime + usage.ru_stime, sum(r["status"] == "collected" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kit", type=Path, required=True)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--max-startups", type=int)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    names = [f"host{i:02}" for i in range(1, args.hosts + 1)]
    config = f"MaxStartups {args.max_startups}\n" if args.max_startups else ""
    fleet = Fleet(work / "net", names, server_config=config)
    try:
        print(f"machine: {machine()}")
        if args.max_startups:
            print(f"evidence server: MaxStartups {args.max_startups}")
        one = one_run(fleet, args.kit, names[:1], work, args.forks)
        many = one_run(fleet, args.kit, names, work, args.forks)
        for label, (wall, cpu, ok), n in (
            ("1 host", one, 1),
            (f"{args.hosts} hosts", many, args.hosts),
        ):
            print(f"{label:9}: wall {wall:6.1f} s, controller CPU {cpu:6.1f} s, collected {ok}/{n}")
        dropped = fleet.server.log.read_text(errors="replace").count("past MaxStartups")
        print(f"the evidence server's sshd dropped {dropped} connections past MaxStartups")
        print(
            f"per host: wall {many[0] / args.hosts:.2f} s (vs {one[0]:.1f} s alone), "
            f"controller CPU {many[1] / args.hosts:.2f} s; fleet/single wall ratio "
            f"{many[0] / one[0]:.2f}x for {args.hosts}x the hosts (forks {args.forks})"
        )
    finally:
        fleet.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
