"""The truncation guard (fanotify): another process's truncation of a followed log waits
until the watch has read it. The watcher here never polls after its first look, so
whatever reaches the evidence was read because the guard made the truncator wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import IS_ROOT, journal_records
from logtools import kernel_version, one_log, quiet_watcher

from collectors.context import CollectContext
from collectors.truncation_guard import TruncationGuard

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="fanotify needs root (CI runs as root)")


def _stored(ctx: CollectContext) -> bytes:
    return b"".join(
        (ctx.root / r["path"]).read_bytes()
        for r in journal_records(ctx.root)
        if r["type"] == "artifact"
    )


def _run(code: str, *args: object) -> None:
    """Another process: the guard lets our own process's opens and truncations through."""
    subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, timeout=30)


def test_copytruncate_style_truncation_waits_for_the_watch(
    ctx: CollectContext, tmp_path: Path
) -> None:
    log = one_log(tmp_path, "app.log", b"old line\n")
    watcher = quiet_watcher(ctx, log.parent)
    if watcher.guard_mode != "opens and truncations" and kernel_version() < (6, 14):
        watcher.close("test")
        pytest.skip(f"truncation events need Linux 6.14+: {watcher.guard_mode}")
    try:
        # logrotate's copytruncate, squeezed: open, (copy), a last line arrives, truncate.
        _run(
            "import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_APPEND)\n"
            "os.write(fd, b'last words before the truncate\\n')\n"
            "os.ftruncate(fd, 0)\n"
            "os.write(fd, b'first line after\\n')\n",
            log,
        )
        assert log.read_bytes() == b"first line after\n"  # delayed, never refused
    finally:
        watcher.close("test")
    stored = _stored(ctx)
    assert b"last words before the truncate\n" in stored
    assert b"first line after\n" in stored
    assert watcher.stats.guarded_accesses >= 1
    ended = next(r for r in journal_records(ctx.root) if r.get("what") == "watch-ended")
    assert ended["truncation_guard"] == "opens and truncations"
    assert [r["what"] for r in journal_records(ctx.root) if r.get("what") == "truncated"]


def test_shell_truncation_is_read_first_on_any_kernel(ctx: CollectContext, tmp_path: Path) -> None:
    """``: > auth.log`` by an intruder: the open with O_TRUNC waits for the watch (open
    permission events exist on every fanotify kernel, not only on 6.14+)."""
    log = one_log(tmp_path, "auth.log", b"")
    watcher = quiet_watcher(ctx, log.parent)
    try:
        assert watcher.guard_mode.startswith("opens")
        with open(log, "ab", buffering=0) as daemon:  # a logger that holds its file open
            daemon.write(b"Accepted password for root from 203.0.113.9\n")
            subprocess.run(["sh", "-c", f": > '{log}'"], check=True, timeout=30)
        assert log.stat().st_size == 0
    finally:
        watcher.close("test")
    assert b"Accepted password for root from 203.0.113.9\n" in _stored(ctx)
    assert watcher.stats.guarded_opens >= 1


def test_a_failing_callback_still_lets_the_other_process_go(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"x\n")

    def broken(key: tuple[int, int], pid: int) -> None:
        raise RuntimeError("a bug in the watch")

    guard = TruncationGuard(broken, broken)
    assert guard.start() is None
    fd = os.open(log, os.O_RDONLY)
    try:
        assert guard.watch(fd)
        started = time.monotonic()
        _run("import sys; open(sys.argv[1], 'w').close()", log)
        assert time.monotonic() - started < 10
        assert log.stat().st_size == 0
        assert guard.failures == 1
    finally:
        guard.close()
        os.close(fd)


def test_the_guard_reports_why_it_cannot_run_without_cap_sys_admin() -> None:
    code = (
        "from collectors.truncation_guard import TruncationGuard\n"
        "print(TruncationGuard(print, print).start())"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.stdout.strip() == "fanotify needs root (CAP_SYS_ADMIN)", done.stderr
