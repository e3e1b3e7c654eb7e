"""Running a host binary, for the few sources no library or /proc file offers (the
nftables ruleset as JSON, iptables-save, non-main IPv4 routing tables, IPv6 neighbours).

A binary is looked up only in fixed system directories (never ``$PATH``, which an
attacker may have changed), run with an empty environment, no stdin, a time limit and an
output cap. Every run is an ``action`` record in the journal (exact argv, resolved
binary, exit code, duration) and its output is stored as an artifact, so the evidence
shows exactly what the tool executed and what came back.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from .context import CollectContext

SYSTEM_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
TIMEOUT_S = 10
OUTPUT_CAP = 64 * 1024 * 1024


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int | None
    stdout: bytes
    stderr: bytes


def find_binary(name: str) -> str | None:
    for directory in SYSTEM_DIRS:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def run_recorded(
    ctx: CollectContext, collector: str, argv: list[str], stored: str, **fields: Any
) -> CommandResult | None:
    """Run ``argv`` (argv[0] a bare name) and store its stdout at ``stored``.

    Returns None, with a ``skipped`` record, when the binary is not installed."""
    binary = find_binary(argv[0])
    if binary is None:
        ctx.engine.record_skip(
            collector, argv[0].encode(), f"{argv[0]} is not installed in {', '.join(SYSTEM_DIRS)}"
        )
        return None
    full = [binary, *argv[1:]]
    began = time.monotonic_ns()
    try:
        proc = subprocess.run(
            full,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={"LC_ALL": "C"},
            timeout=TIMEOUT_S,
            check=False,
        )
        result = CommandResult(full, proc.returncode, proc.stdout[:OUTPUT_CAP], proc.stderr[:4096])
    except subprocess.TimeoutExpired:
        result = CommandResult(full, None, b"", b"")
    except OSError as e:
        ctx.error(collector, f"cannot run {binary}: {e.strerror}", binary.encode())
        return None
    took = time.monotonic_ns() - began
    ctx.journal.append(
        "action",
        collector=collector,
        action="run-command",
        argv=full,
        returncode=result.returncode,
        timed_out=result.returncode is None,
        duration_ns=str(took),
        stdout_size=len(result.stdout),
        stderr=result.stderr.decode("utf-8", "backslashreplace").strip()[:1000],
        stored_path=stored,
        **fields,
    )
    if result.returncode != 0:
        what = "timed out" if result.returncode is None else f"exited {result.returncode}"
        ctx.error(
            collector,
            f"{' '.join(full)} {what}: "
            + result.stderr.decode("utf-8", "backslashreplace").strip()[:200],
            binary.encode(),
            argv=full,
        )
    if result.stdout:
        ctx.engine.store_bytes(stored, result.stdout, collector, argv=full, **fields)
    return result
