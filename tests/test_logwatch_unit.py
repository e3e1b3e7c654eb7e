"""The watcher driven directly, for what the end-to-end tests cannot force on cue: a
truncate-and-refill between two looks, the periodic callbacks, the seal cadence, the
process-wide settings put back."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import pytest
from conftest import journal_records
from logtools import one_log, quiet_watcher

from collectors.context import CollectContext
from collectors.logprofile import LogSource
from collectors.logwatch import LogWatcher
from collectors.process_settings import HOT_PAUSE, WATCH_SWITCH


def test_truncate_and_refill_between_two_looks_is_noticed(
    ctx: CollectContext, tmp_path: Path
) -> None:
    log = one_log(tmp_path, "app.log", b"first life line 1\nfirst life line 2\n")
    watcher = quiet_watcher(ctx, log.parent)
    try:
        track = next(iter(watcher.tracks.values()))
        with watcher._followed.lock:
            watcher._followed.poll(track)
        assert track.offset == 36
        # truncated and refilled past the old offset before the watcher looked again
        log.write_bytes(b"second life, longer than the first one was\n")
        with watcher._followed.lock:
            watcher._followed.poll(track)
    finally:
        watcher.close("test")
    records = journal_records(ctx.root)
    truncated = [r for r in records if r.get("what") == "truncated"]
    assert len(truncated) == 1 and truncated[0]["was"] == "36"
    pieces = {
        r["range"]["offset"]: (ctx.root / r["path"]).read_bytes()
        for r in records
        if r["type"] == "artifact"
    }
    assert pieces[0] == b"second life, longer than the first one was\n"
    assert b"first life line 1\nfirst life line 2\n" in [
        (ctx.root / r["path"]).read_bytes() for r in records if r["type"] == "artifact"
    ]


def test_run_calls_periodic_callbacks_and_seals_on_cadence(
    ctx: CollectContext, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"x\n")
    calls: list[int] = []
    ctx.periodic.append(lambda: calls.append(1))
    ctx.periodic.append(lambda: 1 / 0)  # a broken check must not end the watch
    watcher = LogWatcher(
        ctx, [LogSource(os.fsencode(logs), "t")], seal_interval=0.3, periodic_interval=0.2
    )
    watcher.start()
    try:
        with open(logs / "a.log", "ab") as f:
            for _ in range(5):
                f.write(b"more\n")
                f.flush()
                watcher.run(0.3, lambda: False)
    finally:
        watcher.close("test")
    assert len(calls) >= 5
    seals = [r for r in journal_records(ctx.root) if r["type"] == "seal"]
    assert len(seals) >= 3
    assert journal_records(ctx.root)[-1]["type"] == "seal"


def test_truncate_and_refill_to_the_same_size_is_noticed(
    ctx: CollectContext, tmp_path: Path
) -> None:
    log = one_log(tmp_path, "auth.log", b"session 0 opened\n")
    watcher = quiet_watcher(ctx, log.parent)
    try:
        log.write_bytes(b"session 1 opened\n")  # same length: only the content tells
        with watcher._followed.lock:
            watcher._followed.poll(next(iter(watcher.tracks.values())))
    finally:
        watcher.close("test")
    records = journal_records(ctx.root)
    assert [r["was"] for r in records if r.get("what") == "truncated"] == ["17"]
    stored = [(ctx.root / r["path"]).read_bytes() for r in records if r["type"] == "artifact"]
    assert b"session 0 opened\n" in stored and b"session 1 opened\n" in stored


def test_process_settings_are_changed_during_the_watch_and_restored_after(
    ctx: CollectContext, tmp_path: Path
) -> None:
    """The open-file limit and the switch interval, also when the watch ends while a log
    is hot (polled without pause: the finest switch interval)."""
    log = one_log(tmp_path, "app.log", b"x\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, hard, 1024) - 1
    switch = sys.getswitchinterval()
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    sys.setswitchinterval(0.004)
    try:
        watcher = LogWatcher(ctx, [LogSource(os.fsencode(log.parent), "t")])
        watcher.start()
        try:
            assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
            assert sys.getswitchinterval() == pytest.approx(WATCH_SWITCH)
            with watcher._followed.lock:
                watcher._followed.heat(watcher.tracks.values(), time.monotonic() + 60)
            end = time.monotonic() + 5
            while sys.getswitchinterval() != pytest.approx(HOT_PAUSE) and time.monotonic() < end:
                time.sleep(0.01)
            assert sys.getswitchinterval() == pytest.approx(HOT_PAUSE)
        finally:
            watcher.close("test")
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (lowered, hard)
        assert sys.getswitchinterval() == pytest.approx(0.004)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        sys.setswitchinterval(switch)
