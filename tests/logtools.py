"""Helpers for the log tests: write profiles, run a steady line writer, rebuild each
source inode's bytes from the stored artifacts (initial copies plus watch increments)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import journal_records

from collectors.context import CollectContext
from collectors.logprofile import LogSource
from collectors.logwatch import LogWatcher

WRITER = r"""
import os, sys, time
names, interval, seconds = sys.argv[1].split(","), float(sys.argv[2]), float(sys.argv[3])
counts = dict.fromkeys(names, 0)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for name in names:
        counts[name] += 1
        # Reopen for every line, as a logger that follows its file name would after a
        # rotation; O_APPEND so that copytruncate does not leave holes.
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{os.path.basename(name)} line {counts[name]:08d}\n".encode())
        os.close(fd)
    time.sleep(interval)
print(",".join(f"{n}={c}" for n, c in counts.items()), flush=True)
"""


def write_profile(path: Path, root: Path, **extra: str) -> Path:
    lines = ["version = 1", "[[source]]", f'root = "{root}"', 'description = "test logs"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_writer(logs: list[Path], interval: float, seconds: float) -> subprocess.Popen[bytes]:
    names = ",".join(str(p) for p in logs)
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, names, str(interval), str(seconds)],
        stdout=subprocess.PIPE,
    )


def writer_counts(proc: subprocess.Popen[bytes]) -> dict[str, int]:
    out, _ = proc.communicate(timeout=60)
    return {Path(k).name: int(v) for k, v in (kv.split("=") for kv in out.decode().split(","))}


def evidence_dir(output: Path, timeout: float = 20) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [p for p in output.glob("*") if (p / "custody.jsonl").exists()]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no evidence directory appeared")


def wait_for_event(evidence: Path, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in (evidence / "custody.jsonl").read_bytes().splitlines():
            record = json.loads(line)
            if record["type"] == "event" and record.get("what") == what:
                return
        time.sleep(0.05)
    raise AssertionError(f"no {what} event within {timeout} s")


def rebuild_inodes(evidence: Path) -> dict[tuple[str, str, int], bytearray]:
    """(dev, ino, generation) -> the source's bytes, put together from every stored range
    (a reused inode number starts a new generation)."""
    files: dict[tuple[str, str, int], bytearray] = {}
    for r in journal_records(evidence):
        if r["type"] != "artifact" or not isinstance(r.get("source"), dict):
            continue
        st, rng = r["source"].get("stat"), r.get("range")
        if not st or not rng:
            continue
        data = (evidence / r["path"]).read_bytes()
        assert len(data) == rng["end"] - rng["offset"], r["path"]
        buf = files.setdefault((st["dev"], st["ino"], r.get("generation", 0)), bytearray())
        if len(buf) < rng["end"]:
            buf.extend(bytes(rng["end"] - len(buf)))
        buf[rng["offset"] : rng["end"]] = data
    return files


def preserved_lines(evidence: Path) -> set[bytes]:
    """Every writer line in the evidence: from each inode put back together, and from each
    stored piece on its own (an inode number reused by a new file overlays the old)."""
    lines: set[bytes] = set()
    pieces = [
        (evidence / r["path"]).read_bytes()
        for r in journal_records(evidence)
        if r["type"] == "artifact" and r.get("collector") in ("logs", "files")
    ]
    for data in [*rebuild_inodes(evidence).values(), *pieces]:
        blob = bytes(data)
        if blob[:2] == b"\x1f\x8b":
            try:
                blob = gzip.decompress(blob)
            except (OSError, EOFError):
                continue
        lines.update(line for line in blob.split(b"\n") if b" line " in line)
    return lines


def expected_lines(counts: dict[str, int]) -> set[bytes]:
    return {f"{n} line {i:08d}".encode() for n, c in counts.items() for i in range(1, c + 1)}


def one_log(tmp_path: Path, name: str, content: bytes) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / name).write_bytes(content)
    return logs / name


def quiet_watcher(ctx: CollectContext, logs: Path) -> LogWatcher:
    """A started watcher whose follow thread looks once, at start, and never again: what
    it stores after that, a test's own ``_followed.poll`` or the truncation guard read."""
    source = LogSource(os.fsencode(logs), "t")
    watcher = LogWatcher(ctx, [source], active_poll=3600.0, idle_poll=3600.0)
    watcher.start()
    time.sleep(0.2)  # the first look is done
    return watcher


def kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
