#!/usr/bin/env python3
"""How many of the lines that logrotate's ``copytruncate`` drops does ``--watch`` keep?

logrotate copies a log, fsyncs the copy, then truncates the log: lines written in between
are in neither. That loss is the baseline, counted in the same run. Two logs are
rotated ``--rotations`` times, once a second, while ``preserve --watch`` follows them:

* ``held.log``: a writer that holds the file open (a daemon; O_APPEND, one line every
  0.5 ms). The truncation guard never delays such a writer.
* ``reopen.log``: a writer that opens the file for every line (PHP's ``error_log``).

in each mode of the truncation guard:

* ``truncations``: as root on Linux 6.14+ (ext4, xfs, btrfs): truncations wait for the
  watch;
* ``opens``: as on an older kernel, emulated here by refusing the 6.14 marks (the only
  thing mocked: such a kernel cannot run on this machine);
* ``polling``: without CAP_SYS_ADMIN (as for a non-root responder): no guard at all.

Usage (as root): .venv/bin/python bench/bench_copytruncate.py [--rotations 30]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import PRESERVE, start_watch  # noqa: E402

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
OLD_KERNEL = (
    "import collectors.truncation_guard as g\n"
    "g.TruncationGuard.arm = lambda self, fd, device: False  # no pre-content events\n"
    "from agent._cli import main\n"
    "main()\n"
)
MODES = {
    "truncations": PRESERVE,
    "opens": [sys.executable, "-c", OLD_KERNEL],
    "polling": ["setpriv", "--bounding-set", "-sys_admin", "--", *PRESERVE],
}
WRITER = r"""
import os, sys, time
held_path, reopen_path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
held = os.open(held_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
n = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    n += 1
    os.write(held, b"held %08d\n" % n)
    if n % 2 == 0:
        fd = os.open(reopen_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, b"reopen %08d\n" % (n // 2))
        os.close(fd)
    time.sleep(0.0005)
print(n)
"""


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # a compressed generation, stored as it was
        data = gzip.decompress(data)
    return data.splitlines()


def run_mode(work: Path, mode: str, rotations: int) -> dict:
    logs = work / mode
    logs.mkdir()
    held, reopen = logs / "held.log", logs / "reopen.log"
    conf = work / f"{mode}.conf"
    conf.write_text(f"{held} {reopen} {{\n    copytruncate\n    compress\n    rotate 1000\n}}\n")
    seconds = rotations + 2
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, held, reopen, str(seconds)], stdout=subprocess.PIPE
    )
    time.sleep(0.2)
    proc = start_watch(work, mode, logs, seconds + 2, MODES[mode])
    state = work / f"{mode}.state"
    for _ in range(rotations):
        time.sleep(1)
        subprocess.run([LOGROTATE, "-f", "-s", state, conf], check=True, capture_output=True)
    written = int(writer.communicate()[0])
    summary = json.loads(proc.communicate(timeout=120)[0])
    evidence = Path(summary["evidence_dir"])
    kept: set[bytes] = set()
    guard = ""
    for line in (evidence / "custody.jsonl").read_bytes().splitlines():
        record = json.loads(line)
        guard = record.get("truncation_guard", guard)
        if record["type"] == "artifact":
            kept.update(_lines(evidence / record["path"]))
    on_disk = {line for path in logs.iterdir() for line in _lines(path)}
    result: dict = {"guard": guard}
    for name, count in (("held", written), ("reopen", written // 2)):
        wanted = {b"%s %08d" % (name.encode(), i) for i in range(1, count + 1)}
        dropped = wanted - on_disk
        result[name] = {
            "written": count,
            "dropped_by_logrotate": len(dropped),
            "caught": len(dropped & kept),
            "lost": len(wanted - kept),
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rotations", type=int, default=30)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the truncation guard needs CAP_SYS_ADMIN")
    with tempfile.TemporaryDirectory(prefix="bench-ct-", dir="/tmp") as tmp:
        for mode in args.modes.split(","):
            r = run_mode(Path(tmp), mode, args.rotations)
            for name in ("held", "reopen"):
                c = r[name]
                print(
                    f"{mode:11} {name:6}: {args.rotations} rotations, {c['written']} lines; "
                    f"logrotate dropped {c['dropped_by_logrotate']}, the watch caught "
                    f"{c['caught']}; lost {c['lost']}  [guard: {r['guard']}]"
                )


if __name__ == "__main__":
    main()
