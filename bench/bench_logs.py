#!/usr/bin/env python3
"""Benchmarks for issue 4 (logs and --watch), each against a baseline run in the same go.

1. Initial pass: a synthetic /var/log-like tree of ``--size`` (default 2 GiB: many small
   logs, a few big ones, compressed generations) preserved by ``preserve --only logs``
   against ``cp -a`` + ``sha256sum`` of the same tree. Both run on a warm page cache
   (the tree is read once first), so this compares the tools, not the disk.
2. Watch: ``--logs`` logs (default 10) each appended at ``--rate`` (default 5 MB/s) by a
   separate writer while ``preserve --watch`` follows them. Reported: lines lost (must be
   0), the watcher's CPU time as a share of one core (from /proc, target < 25 %) and the
   lag between a line's write and the journal record that preserves it.
3. An idle watch over 1000 quiet logs: its CPU share.
4. The truncation guard's cost to other processes (root): opening a followed log, a
   logger that reopens it for every line, and one that holds it open, each against the
   same operations on an unwatched file in the same run.

Everything is generated under a temporary directory in /tmp and deleted afterwards.
Usage: .venv/bin/python bench/bench_logs.py [--size 2G] [--watch-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import PRESERVE, profile, start_watch  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def make_tree(root: Path, total: int) -> int:
    """Mixed sizes: text logs of 1 KiB..4 MiB, a few of 64..256 MiB, incompressible
    ``.gz``/``.xz`` generations; journald-sized binary files."""
    rng = random.Random(4)
    line = b"Nov 27 05:20:00 host sshd[1234]: Accepted publickey for root from 10.0.0.1\n"
    text = line * (4 << 20 // len(line) + 1)
    noise = os.urandom(8 << 20)
    made = 0
    services = ["nginx", "apache2", "mysql", "audit", "sssd", "cups", "apt", "journal/abc"]
    n = 0
    while made < total:
        d = root / rng.choice(services)
        d.mkdir(parents=True, exist_ok=True)
        kind = rng.random()
        n += 1
        if kind < 0.03:
            size, name, src = rng.randint(64, 256) << 20, f"big{n}.log", text
        elif kind < 0.35:
            size, name, src = rng.randint(1 << 10, 4 << 20), f"app{n}.log.{n % 9 + 2}.gz", noise
        elif kind < 0.40:
            size, name, src = rng.randint(1 << 20, 8 << 20), f"system@{n}.journal", noise
        else:
            size, name, src = rng.randint(1 << 10, 4 << 20), f"app{n}.log", text
        size = min(size, total - made)
        with open(d / name, "wb") as f:
            left = size
            while left:
                chunk = src[: min(left, len(src))]
                f.write(chunk)
                left -= len(chunk)
        made += size
    return n


def timed(argv: list, **kw: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, **kw)
    return time.perf_counter() - start


def bench_initial(work: Path, size: int) -> dict:
    tree = work / "var-log"
    files = make_tree(tree, size)
    subprocess.run(["cat", *map(str, tree.rglob("*.log"))], stdout=subprocess.DEVNULL)
    for p in tree.rglob("*"):  # warm the page cache for both contenders
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass
    prof = profile(work / "bench.toml", tree)
    out = work / "out"
    t_preserve = timed(
        [*PRESERVE, "-q", "-o", out, "--only", "logs", "--profile", prof],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    evidence = next(out.iterdir())
    t_verify = timed(
        [sys.executable, "-c", "from agent.commands.verify import main; main()", "-q", evidence],
        cwd=ROOT,
    )
    shutil.rmtree(out)
    copy = work / "cp"
    t_cp = timed(["cp", "-a", tree, copy])
    t_sha = timed(f"find {copy} -type f -print0 | xargs -0 sha256sum > {work}/sums", shell=True)
    shutil.rmtree(copy)
    shutil.rmtree(tree)
    return {
        "files": files,
        "bytes": size,
        "preserve_s": t_preserve,
        "verify_s": t_verify,
        "cp_s": t_cp,
        "sha256sum_s": t_sha,
        "baseline_s": t_cp + t_sha,
        "ratio": t_preserve / (t_cp + t_sha),
    }


WRITER = r"""
import os, sys, time
d, n, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
pad = b"x" * 960
fds = [os.open(f"{d}/app{i}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for i in range(n)]
seq = [0] * n
tick = 0.01
per_tick = max(1, int(rate * tick / 1000))  # lines of ~1000 bytes
start = time.monotonic()
end = start + seconds
k = 0
while time.monotonic() < end:
    now = time.monotonic_ns()
    for i, fd in enumerate(fds):
        lines = []
        for _ in range(per_tick):
            seq[i] += 1
            lines.append(b"app%d %010d %d " % (i, seq[i], now) + pad + b"\n")
        os.write(fd, b"".join(lines))
    k += 1
    delay = start + k * tick - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(",".join(map(str, seq)))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def bench_watch(work: Path, logs: int, rate: int, seconds: float) -> dict:
    d = work / "live"
    d.mkdir()
    for i in range(logs):
        (d / f"app{i}.log").write_bytes(b"")
    proc = start_watch(work, "watch", d, seconds + 4)
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, d, str(logs), str(rate), str(seconds)],
        capture_output=True, check=True,
    )  # fmt: skip
    time.sleep(1.5)  # the last flush interval
    cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    summary = json.loads(proc.communicate(timeout=120)[0])
    counts = [int(c) for c in writer.stdout.decode().split(",")]
    evidence = Path(summary["evidence_dir"])
    seen: dict[int, set[int]] = {i: set() for i in range(logs)}
    lags = []
    written_bytes = 0
    for line in (evidence / "custody.jsonl").read_bytes().splitlines():
        r = json.loads(line)
        if r["type"] != "artifact" or r.get("kind") != "log-increment":
            continue
        data = (evidence / r["path"]).read_bytes()
        written_bytes += len(data)
        first = True
        for text in data.split(b"\n"):
            parts = text.split(b" ", 3)
            if len(parts) < 4 or not parts[0].startswith(b"app"):
                continue
            seen[int(parts[0][3:])].add(int(parts[1]))
            if first:  # the oldest line of an increment waited longest
                lags.append((int(r["mono_ns"]) - int(parts[2])) / 1e6)
                first = False
    lost = sum(len(set(range(1, c + 1)) - seen[i]) for i, c in enumerate(counts))
    verified = subprocess.run(
        [sys.executable, "-c", "from agent.commands.verify import main; main()", "-q", evidence],
        cwd=ROOT,
    ).returncode
    shutil.rmtree(evidence.parent)
    shutil.rmtree(d)
    lags.sort()
    return {
        "logs": logs,
        "rate_bytes_per_s_each": rate,
        "seconds": seconds,
        "lines_written": sum(counts),
        "lines_lost": lost,
        "bytes_preserved": written_bytes,
        "increments": len(lags),
        "cpu_share_of_one_core": (cpu1 - cpu0) / (t1 - t0),
        "lag_ms_median": statistics.median(lags),
        "lag_ms_p95": lags[int(len(lags) * 0.95)],
        "lag_ms_max": lags[-1],
        "verify_exit": verified,
    }


GUARD_COST = r"""
import json, os, sys, time
guarded, plain = sys.argv[1], sys.argv[2]
held = {guarded: int(sys.argv[3]), plain: int(sys.argv[4])}  # opened before the watch
line = b"x" * 99 + b"\n"

def open_close(path):
    os.close(os.open(path, os.O_RDONLY))

def reopen_write(path):  # a logger that opens its file for every line (PHP's error_log)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, line)
    os.close(fd)

def held_write(path):
    os.write(held[path], line)

def per_op_us(fn, path, n=2000):
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn(path)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6

print(json.dumps({
    fn.__name__: {"guarded_us": per_op_us(fn, guarded), "plain_us": per_op_us(fn, plain)}
    for fn in (open_close, reopen_write, held_write)
}))
"""


OPEN_LATENCY = r"""
import json, os, sys, time
guarded, plain = sys.argv[1], sys.argv[2]
waits = {guarded: [], plain: []}
for i in range(400):  # one process opening both files 400 times, 10 ms apart
    for path in (guarded, plain):
        start = time.perf_counter()
        os.close(os.open(path, os.O_RDONLY))
        waits[path].append((time.perf_counter() - start) * 1e3)
    time.sleep(0.01)
def pct(v):
    v = sorted(v)
    return {"p50_ms": v[len(v) // 2], "p99_ms": v[int(len(v) * 0.99)], "max_ms": v[-1]}
print(json.dumps({"guarded": pct(waits[guarded]), "plain": pct(waits[plain])}))
"""


def bench_guard(work: Path, logs: int, rate: int) -> dict:
    """What the truncation guard costs other processes: opens, a logger that reopens its
    file for every line, and a logger that holds it open, against an unwatched file."""
    d, other = work / "guarded", work / "plain"
    d.mkdir()
    other.mkdir()
    guarded, plain = d / "app.log", other / "app.log"
    guarded.write_bytes(b"")
    plain.write_bytes(b"")
    held_g = os.open(guarded, os.O_WRONLY | os.O_APPEND)  # opened before the watch
    held_p = os.open(plain, os.O_WRONLY | os.O_APPEND)
    proc = start_watch(work, "guard", d, 600)
    started = next(
        json.loads(line)
        for line in next((work / "guard-out").glob("*/custody.jsonl")).read_bytes().splitlines()
        if b"watch-started" in line
    )
    done = subprocess.run(
        [sys.executable, "-c", GUARD_COST, guarded, plain, str(held_g), str(held_p)],
        capture_output=True, check=True, pass_fds=(held_g, held_p),
    )  # fmt: skip
    # Under load: the watch also follows `logs` other logs written at `rate` each.
    load = subprocess.Popen(
        [sys.executable, "-c", WRITER, d, str(logs), str(rate), "8"], stdout=subprocess.DEVNULL
    )
    time.sleep(1)
    latency = subprocess.run(
        [sys.executable, "-c", OPEN_LATENCY, guarded, plain], capture_output=True, check=True
    )
    load.wait()
    proc.send_signal(signal.SIGTERM)
    summary = json.loads(proc.communicate(timeout=120)[0])
    os.close(held_g)
    os.close(held_p)
    result = json.loads(done.stdout)
    result["open_under_load"] = json.loads(latency.stdout)
    result["guard"] = started["truncation_guard"]
    result["status"] = summary["status"]
    return result


def bench_idle(work: Path, logs: int = 1000, seconds: float = 8) -> dict:
    """The watch's cost when nothing is written: ``logs`` quiet logs (a /var/log full of
    rotated generations)."""
    d = work / "quiet"
    d.mkdir()
    for i in range(logs):
        (d / f"old{i}.log").write_bytes(b"an old line\n")
    proc = start_watch(work, "idle", d, 600)
    time.sleep(1)
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    return {"logs": logs, "cpu_share_of_one_core": (cpu1 - cpu0) / (t1 - t0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2G")
    ap.add_argument("--logs", type=int, default=10)
    ap.add_argument("--rate", type=int, default=5_000_000)
    ap.add_argument("--watch-seconds", type=float, default=20)
    ap.add_argument("--skip-initial", action="store_true")
    args = ap.parse_args()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = int(args.size[:-1]) * units[args.size[-1].upper()]
    with tempfile.TemporaryDirectory(prefix="bench-logs-", dir="/tmp") as tmp:
        work = Path(tmp)
        if not args.skip_initial:
            r = bench_initial(work, size)
            print(
                f"initial pass: {r['files']} files, {r['bytes'] / (1 << 30):.2f} GiB: preserve "
                f"{r['preserve_s']:.2f} s vs cp -a + sha256sum {r['baseline_s']:.2f} s "
                f"(cp {r['cp_s']:.2f} s + sha256sum {r['sha256sum_s']:.2f} s): "
                f"ratio {r['ratio']:.2f}; verify {r['verify_s']:.2f} s"
            )
        i = bench_idle(work)
        print(
            f"idle watch over {i['logs']} quiet logs: CPU "
            f"{100 * i['cpu_share_of_one_core']:.1f} % of one core"
        )
        g = bench_guard(work, args.logs, args.rate)
        print(f"truncation guard ({g['guard']}), cost to other processes, best of 3 x 2000:")
        for name, what in [
            ("open_close", "open+close of a followed log"),
            ("reopen_write", "open+write+close per line"),
            ("held_write", "write to a log held open since before the watch"),
        ]:
            r = g[name]
            print(
                f"  {what}: {r['guarded_us']:.1f} us vs {r['plain_us']:.1f} us unwatched "
                f"(ratio {r['guarded_us'] / r['plain_us']:.2f})"
            )
        under = g["open_under_load"]
        print(
            f"  open of a followed log while the watch stores {args.logs} x "
            f"{args.rate / 1e6:.0f} MB/s, p50/p99/max: "
            + " vs ".join(
                f"{under[k]['p50_ms']:.2f}/{under[k]['p99_ms']:.2f}/{under[k]['max_ms']:.1f} ms"
                for k in ("guarded", "plain")
            )
            + " unwatched"
        )
        w = bench_watch(work, args.logs, args.rate, args.watch_seconds)
        print(
            f"watch: {w['logs']} logs x {w['rate_bytes_per_s_each'] / 1e6:.0f} MB/s for "
            f"{w['seconds']:.0f} s: {w['lines_written']} lines, {w['lines_lost']} lost, "
            f"{w['bytes_preserved'] / 1e6:.0f} MB in {w['increments']} increments; watcher CPU "
            f"{100 * w['cpu_share_of_one_core']:.1f} % of one core; lag write->stored "
            f"median {w['lag_ms_median']:.0f} ms, p95 {w['lag_ms_p95']:.0f} ms, max "
            f"{w['lag_ms_max']:.0f} ms; verify exit {w['verify_exit']}"
        )


if __name__ == "__main__":
    main()
