"""The truncation guard (fanotify): another process's truncation of a followed log waits
until the watch has read it. The watcher here never polls after its first look, so
whatever reaches the evidence was read because the guard made the truncator wait."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import IS_ROOT, journal_records
from logtools import kernel_version, one_log, quiet_watcher

from collectors.context import CollectContext
from collectors.logprofile import LogSource
from collectors.logwatch import LogWatcher
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


def test_guard_survives_an_event_it_cannot_open(tmp_path: Path) -> None:
    """With no descriptor left for an event, the kernel refuses that open and the read
    fails: the guard must go on answering, or every later open of the log would hang."""
    code = r"""
import os, resource, subprocess, sys, time
from collectors.truncation_guard import TruncationGuard
log, go = sys.argv[1], sys.argv[2]
guard = TruncationGuard(lambda k, p: None, lambda k, p: None)
assert guard.start() is None
fd = os.open(log, os.O_RDONLY)
assert guard.watch(fd)
opener = ("import os, sys, time\n"
          "while not os.path.exists(sys.argv[2]): time.sleep(0.01)\n"
          "try:\n"
          "    open(sys.argv[1]).close(); print('opened', flush=True)\n"
          "except OSError: print('refused', flush=True)\n")
first = subprocess.Popen([sys.executable, "-c", opener, log, go + "1"])
second = subprocess.Popen([sys.executable, "-c", opener, log, go + "2"])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
filler = []
try:
    while True:
        filler.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
os.mkdir(go + "1")  # needs no descriptor
first.wait(timeout=30)
for f in filler:
    os.close(f)
started = time.monotonic()
os.mkdir(go + "2")
second.wait(timeout=30)
print(round(time.monotonic() - started, 2), guard.read_errors, guard._thread.is_alive(), flush=True)
guard.close()
"""
    log = tmp_path / "x.log"
    log.write_bytes(b"line\n")
    done = subprocess.run(
        [sys.executable, "-c", code, log, tmp_path / "go"], capture_output=True, text=True,
        timeout=60, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    first, second, waited, read_errors, alive = done.stdout.split()
    assert first == "refused"  # by the kernel: no descriptor for its event
    assert (second, alive) == ("opened", "True"), done.stdout + done.stderr
    assert float(waited) < 5 and int(read_errors) >= 1


def test_a_quiet_log_written_then_truncated_by_path_keeps_its_line(
    ctx: CollectContext, tmp_path: Path
) -> None:
    """``truncate(2)`` by path opens nothing, so only a poll can see the line first: a
    quiet log is looked at every 0.1 s."""
    log = one_log(tmp_path, "auth.log", b"")
    watcher = LogWatcher(ctx, [LogSource(os.fsencode(log.parent), "t")])
    watcher.start()
    try:
        with open(log, "ab", buffering=0) as daemon:  # held since before the watch
            for i in range(3):
                daemon.write(b"session %d opened for root\n" % i)
                time.sleep(0.3)
                os.truncate(log, 0)
    finally:
        watcher.close("test")
    stored = _stored(ctx)
    for i in range(3):
        assert b"session %d opened for root\n" % i in stored


def test_the_follow_thread_outlives_an_error(ctx: CollectContext, tmp_path: Path) -> None:
    log = one_log(tmp_path, "app.log", b"")
    watcher = LogWatcher(ctx, [LogSource(os.fsencode(log.parent), "t")])
    real_poll = watcher._followed.poll
    failures: list[str] = []

    def poll_failing_once(track: object, *a: object, **k: object) -> None:
        if not failures and threading.current_thread().name == "watch-follow":
            failures.append("raised")
            raise OSError(28, "No space left on device")
        real_poll(track, *a, **k)  # type: ignore[arg-type]

    watcher._followed.poll = poll_failing_once  # type: ignore[method-assign]
    watcher.start()
    try:
        time.sleep(0.3)
        log.write_bytes(b"written after the error\n")
        track = next(iter(watcher.tracks.values()))
        end = time.monotonic() + 5
        while track.offset == 0 and time.monotonic() < end:
            time.sleep(0.05)
        assert failures and track.offset == len(b"written after the error\n")
    finally:
        watcher.close("test")


def test_a_logger_reopening_for_every_line_does_not_keep_the_log_armed(
    ctx: CollectContext, tmp_path: Path
) -> None:
    log = one_log(tmp_path, "php.log", b"")
    watcher = quiet_watcher(ctx, log.parent)
    try:
        if not watcher.guard_mode.startswith("opens and truncations"):
            pytest.skip(f"needs truncation events: {watcher.guard_mode}")
        track = next(iter(watcher.tracks.values()))
        _run(
            "import os, sys, time\n"
            "for i in range(20):\n"
            "    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
            "    os.write(fd, b'PHP Warning: line %d\\n' % i)\n"
            "    os.close(fd)\n"
            "    time.sleep(0.02)\n",
            log,
        )
        first_arm = track.armed_until
        assert first_arm > 0 and watcher.stats.guarded_opens == 20
        _run("open(__import__('sys').argv[1]).close()", log)  # another process: arms again
        assert track.armed_until > first_arm
    finally:
        watcher.close("test")


def test_marks_go_with_the_log(ctx: CollectContext, tmp_path: Path) -> None:
    """An inode mark outlives the descriptor: untracking must remove it (armed or not)."""
    log = one_log(tmp_path, "a.log", b"x\n")
    watcher = quiet_watcher(ctx, log.parent)
    try:
        _run("open(__import__('sys').argv[1]).close()", log)  # arms it where possible
        guard_fd = watcher._followed.guard._fd
        marks = Path(f"/proc/self/fdinfo/{guard_fd}").read_text().count("fanotify ino:")
        assert marks == 1
        with watcher._followed.lock:
            watcher._followed.untrack(next(iter(watcher.tracks.values())))
        assert Path(f"/proc/self/fdinfo/{guard_fd}").read_text().count("fanotify ino:") == 0
    finally:
        watcher.close("test")
