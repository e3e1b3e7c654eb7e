"""Windows event logs: one ``wevtutil epl`` export per channel.

``wevtutil`` is the only supported way to get a consistent copy of a live ``.evtx`` (the
files under ``System32\\winevt\\Logs`` are held open by the event log service). It writes
straight into the evidence directory; the copy is then hashed and journalled as it is.
Availability: Windows. The commands are unit-tested here; they cannot run on Linux."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from .context import CollectContext
from .logprofile import Profile

WEVTUTIL = "wevtutil.exe"
TIMEOUT = 1800  # seconds for one channel; a busy Security log can take minutes
Runner = Callable[..., subprocess.CompletedProcess[bytes]]


def list_channels_argv() -> list[str]:
    return [WEVTUTIL, "el"]


def export_argv(channel: str, dest: str) -> list[str]:
    # /ow:false: never overwrite; the destination was just reserved and must not exist.
    return [WEVTUTIL, "epl", channel, dest, "/ow:false"]


def channel_filename(channel: str) -> str:
    """``Microsoft-Windows-PowerShell/Operational`` -> ``...PowerShell%4Operational.evtx``,
    the name Windows itself gives the channel's file."""
    return channel.replace("/", "%4") + ".evtx"


def parse_channel_list(stdout: bytes) -> list[str]:
    text = stdout.decode("utf-8", "replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _first_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[0][:200] if lines else "no message"


def _run(
    ctx: CollectContext, argv: list[str], run: Runner, **fields: Any
) -> subprocess.CompletedProcess[bytes] | None:
    try:
        result = run(argv, capture_output=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        ctx.error("logs", f"{argv[0]} not found; export the event logs by hand", **fields)
        return None
    except subprocess.TimeoutExpired:
        ctx.error("logs", f"{' '.join(argv[:3])} took more than {TIMEOUT} s; stopped", **fields)
        return None
    ctx.journal.append(
        "action", collector="logs", command=argv, returncode=result.returncode, **fields
    )
    if result.returncode != 0:
        ctx.error(
            "logs",
            f"{' '.join(argv[:3])} failed (exit {result.returncode}): {_first_line(result.stderr)}",
            **fields,
        )
        return None
    return result


def collect(ctx: CollectContext, profile: Profile, run: Runner = subprocess.run) -> None:
    channels = list(profile.windows_channels)
    if profile.windows_all_channels:
        listed = _run(ctx, list_channels_argv(), run)
        if listed is not None:
            channels += [c for c in parse_channel_list(listed.stdout) if c not in channels]
    for channel in channels:
        rel = ctx.engine.reserve(f"artifacts/logs/windows/{channel_filename(channel)}")
        argv = export_argv(channel, str(ctx.root / rel))
        if _run(ctx, argv, run, channel=channel) is not None:
            ctx.engine.adopt(rel, "logs", kind="windows-event-log", channel=channel, command=argv)
