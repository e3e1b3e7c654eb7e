"""``--watch DURATION``: the orchestrator's ``after_collect`` hook.

It follows the logs collector's sources and the ``--path`` trees with
``collectors.logwatch.LogWatcher``. Ctrl-C, SIGTERM and SIGHUP end the watch *cleanly*:
during the watch they only set a flag, so no store or journal write is ever cut in half,
and everything read so far is stored and sealed before the run closes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from collectors.base import Collector
from collectors.context import CollectContext
from collectors.logprofile import LogSource
from collectors.logwatch import LogWatcher
from collectors.textview import plural

from .console import Console, human_bytes

WatchHook = Callable[[CollectContext, Console], dict[str, Any]]


def watch_sources(collectors: list[Collector], paths: list[bytes]) -> list[LogSource]:
    sources = [s for c in collectors for s in c.watch_sources()]
    roots = {s.root for s in sources}
    sources += [
        LogSource(p, "given with --path") for p in paths if p not in roots and os.path.lexists(p)
    ]
    return sources


def _duration_text(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def _guard_text(mode: str) -> str:
    if mode.startswith("off: "):
        return (
            f"truncation guard off ({mode[5:]}): a log truncated during the watch may lose "
            "its last lines; run as root to prevent that"
        )
    if mode == "opens and truncations":
        return (
            "truncation guard: opens and truncations of these logs wait until preserve "
            "has read them"
        )
    return (
        "truncation guard: opens of these logs wait until preserve has read them "
        "(truncations too, on Linux 6.14+)"
    )


def make_watch_hook(duration: float, collectors: list[Collector], paths: list[bytes]) -> WatchHook:
    def hook(ctx: CollectContext, console: Console) -> dict[str, Any]:
        watcher = LogWatcher(ctx, watch_sources(collectors, paths))
        stop: list[str] = []

        def on_signal(signum: int, frame: object) -> None:
            stop.append(signal.Signals(signum).name)

        watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, on_signal) for s in watched}
        # Ctrl-Z would freeze the watch while other processes' opens and truncations of
        # the followed logs wait for it (collectors/truncation_guard.py).
        previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
        try:
            watcher.start()
            console.info(
                f"following {plural(len(watcher.tracks), 'log')} in "
                f"{plural(len(watcher.directories()), 'location')} for "
                f"{_duration_text(duration)}; Ctrl-C ends the watch and seals"
            )
            console.info(_guard_text(watcher.guard_mode))
            ctx.log.info("watch_started", followed=len(watcher.tracks), seconds=int(duration))
            console.start_progress(lambda: (watcher.stats.increments, watcher.stats.bytes))
            watcher.run(duration, lambda: bool(stop))
        finally:
            console.stop_progress()
            if stop:
                reason = f"ended by {stop[0]}"
            elif ctx.engine.full.is_set():
                reason = "output drive full"
            else:
                reason = "duration elapsed"
            try:
                watcher.close(reason)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        s = watcher.stats
        events = ", ".join(f"{n} {w}" for w, n in sorted(s.events.items())) or "none"
        console.info(f"watch {reason}: {s.increments} increments, {human_bytes(s.bytes)}")
        ctx.log.info("watch_ended", reason=reason, increments=s.increments, bytes=s.bytes)
        ctx.summary.add("Watch", f"{reason}: {s.increments} increments, {human_bytes(s.bytes)}")
        ctx.summary.add("Log events", events)
        return {
            "watch": {
                "reason": reason,
                "increments": s.increments,
                "bytes": s.bytes,
                "events": dict(sorted(s.events.items())),
                "followed": s.followed,
            },
        }

    return hook
