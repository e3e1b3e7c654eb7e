"""The journal parser against ``journalctl --file X -o json --all`` on the same file, in
the same run: a journal of N entries shaped like a server's (sshd, sudo, systemd, kernel
lines with the usual trusted fields), written by systemd-journal-remote.

    .venv/bin/python bench/bench_journald.py --entries 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from journaltools import need_tools, write_journal  # noqa: E402

from collectors.journalfile import JournalFile  # noqa: E402

UNITS = [b"sshd", b"sudo", b"systemd", b"kernel", b"cron", b"nginx"]


def entries(n: int) -> list[list[bytes]]:
    out = []
    for i in range(n):
        unit = UNITS[i % len(UNITS)]
        out.append([
            b"MESSAGE=%s: session %d opened for u%d from 198.51.100.%d" % (unit, i, i % 50, i % 9),
            b"SYSLOG_IDENTIFIER=" + unit, b"_COMM=" + unit, b"_PID=%d" % (1000 + i % 3000),
            b"_UID=0", b"_GID=0", b"PRIORITY=6", b"SYSLOG_FACILITY=10", b"_TRANSPORT=syslog",
            b"_HOSTNAME=web-01", b"_MACHINE_ID=3d1219c7c4c5404aaa1f6d2a48adfda4",
            b"_SYSTEMD_UNIT=%s.service" % unit, b"_SYSTEMD_CGROUP=/system.slice/%s.service" % unit,
            b"_CMDLINE=/usr/sbin/%s -D" % unit, b"_EXE=/usr/sbin/" + unit,
            b"_SOURCE_REALTIME_TIMESTAMP=%d" % (1_700_000_000_000_000 + i),
        ])  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=14_000)  # one 16 MiB file
    ap.add_argument("--rounds", type=int, default=3)  # interleaved; medians reported
    args = ap.parse_args()
    need_tools()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_journal(Path(tmp) / "bench.journal", entries(args.entries), compact=True)
        size = path.stat().st_size
        bases, ours_t = [], []
        for _ in range(args.rounds):
            t = time.monotonic()
            subprocess.run(["journalctl", "--file", str(path), "-o", "json", "--all"],
                           stdout=subprocess.DEVNULL, check=True)  # fmt: skip
            bases.append(time.monotonic() - t)
            t = time.monotonic()
            fd = os.open(path, os.O_RDONLY)
            n = sum(
                len(json.dumps(e, ensure_ascii=False)) > 0 for e in JournalFile.open(fd).entries()
            )
            os.close(fd)
            ours_t.append(time.monotonic() - t)
        base, ours = statistics.median(bases), statistics.median(ours_t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{n} entries, journal file {size / 2**20:.0f} MiB")
    print(f"journalctl -o json --all: {base:.2f} s")
    print(f"ours (parse + JSON): {ours:.2f} s  ratio {ours / base:.2f}  {n / ours:,.0f} entries/s")
    print(f"peak RSS (this process, incl. writing the test journal): {rss} MiB")


if __name__ == "__main__":
    main()
