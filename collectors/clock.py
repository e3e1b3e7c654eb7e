"""``clock``: the host's wall clock, checked against what it cannot easily fake.

Every timestamp in the journal and every reporting deadline is counted from the host's
clock, which an intruder can set (to 2001, say) or fake for one process
(``LD_PRELOAD``/libfaketime). It is compared with:

- the kernel's ``CLOCK_REALTIME`` read by a raw system call (a hook in libc changes what
  this process is told, not what the kernel keeps);
- ``CLOCK_BOOTTIME`` against the boot recorded in ``/run/utmp`` when the host booted:
  ``now - time since boot`` must land on it;
- the newest modification times of the logs and journals (later than "now" is
  impossible) and of this tool's own files and the kit's build time (a clock before
  them is impossible);
- ``--reference-time``, the responder's own watch or phone.

A disagreement over ``MAX_SKEW_S`` is a HIGH ``degraded`` finding (closing box, ``--json``,
journal); every reading is in the ``clock-check`` event.
"""

from __future__ import annotations

import ctypes
import os
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from manifests.clock import utc_from_ns
from manifests.errors import UsageError

from . import rawsys, utmp
from .base import Collector, Stage
from .context import CollectContext
from .degraded import HIGH, degrade
from .readfile import read_regular

MAX_SKEW_S = 300
_NS = 1_000_000_000
_CLOCK_REALTIME, _CLOCK_BOOTTIME = 0, 7
LOG_DIRS = ("/var/log", "/var/log/journal", "/run/log/journal")
MAX_ENTRIES = 5000  # per directory level: bounded, never a walk of the disk
_TOOL = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_reference_time(text: str) -> int:
    """``--reference-time``: ISO 8601 (``2026-12-01T20:15``, UTC unless an offset or
    ``Z`` is given) or ``@SECONDS``; nanoseconds since the epoch."""
    try:
        if text.startswith("@"):
            return int(text[1:]) * _NS
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise UsageError(
            f"--reference-time {text!r}: not a time",
            hint="give it as 2026-12-01T20:15:00Z (UTC) or with an offset, +01:00",
        ) from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * _NS + when.microsecond * 1000


def _raw_clock(clock: int) -> int | None:
    """A clock as the kernel keeps it, by a raw ``clock_gettime`` (None: unavailable)."""
    ts = (ctypes.c_long * 2)()
    try:
        if rawsys.syscall("clock_gettime", clock, ctypes.addressof(ts)) != 0:
            return None
    except KeyError:
        return None
    return int(ts[0]) * _NS + int(ts[1])


def _newest_mtime(directories: tuple[str, ...], depth: int = 2) -> tuple[int, str] | None:
    newest: tuple[int, str] | None = None
    level = list(directories)
    for _ in range(depth):
        below = []
        for directory in level:
            try:
                entries = list(os.scandir(directory))[:MAX_ENTRIES]
            except OSError:
                continue
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if newest is None or st.st_mtime_ns > newest[0]:
                    newest = (st.st_mtime_ns, e.path)
                if e.is_dir(follow_symlinks=False):
                    below.append(e.path)
        level = below
    return newest


def _recorded_boot() -> int | None:
    for path in ("/run/utmp", "/var/run/utmp"):
        try:
            # read_regular: a FIFO planted there would hold the run waiting for a writer
            records = utmp.parse_utmp(read_regular(path, 1 << 20))
        except OSError:
            continue
        boots = [r for r in records if r.get("type") == "BOOT_TIME"]
        if boots:
            return int(boots[-1]["time_s"]) * _NS + int(boots[-1]["time_us"]) * 1000
    return None


class ClockCollector(Collector):
    name: ClassVar[str] = "clock"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 1  # first: every later timestamp depends on it
    description: ClassVar[str] = "the host clock checked against the kernel, logs and you"

    def collect(self, ctx: CollectContext) -> None:
        now = time.time_ns()
        checks: list[dict[str, Any]] = []

        def check(source: str, skew_ns: int, impossible: bool, **seen: Any) -> None:
            checks.append({"source": source, "skew_s": skew_ns // _NS, **seen})
            if impossible:
                degrade(
                    ctx,
                    self.name,
                    "clock",
                    HIGH,
                    f"the host clock ({utc_from_ns(now)}) disagrees with {source} by "
                    f"{abs(skew_ns) // _NS} s; times in this evidence are the host's",
                    skew_s=skew_ns // _NS,
                    **seen,
                )

        limit = MAX_SKEW_S * _NS
        kernel = _raw_clock(_CLOCK_REALTIME)
        if kernel is not None:
            check("the kernel's CLOCK_REALTIME", now - kernel, abs(now - kernel) > limit)
        boottime, boot = _raw_clock(_CLOCK_BOOTTIME), _recorded_boot()
        if boottime is not None and boot is not None:
            implied = now - boottime
            check(
                "the boot recorded in utmp",
                implied - boot,
                abs(implied - boot) > limit,
                recorded_boot=utc_from_ns(boot),
                implied_boot=utc_from_ns(implied),
            )
        for source, dirs in (("the newest log or journal file", LOG_DIRS),):
            newest = _newest_mtime(dirs)
            if newest is not None:
                check(source, now - newest[0], newest[0] - now > limit, path=newest[1])
        floor = self._floor(ctx)
        if floor is not None:
            check("this tool's build", now - floor[0], floor[0] - now > limit, built=floor[1])
        ref = ctx.options.reference_time
        if ref is not None:
            check(
                "the responder's --reference-time",
                now - ref,
                abs(now - ref) > limit,
                reference_time=utc_from_ns(ref),
            )
        ctx.journal.append(
            "event",
            event="clock-check",
            collector=self.name,
            host_time=utc_from_ns(now),
            kernel_realtime=utc_from_ns(kernel) if kernel is not None else None,
            boottime_ns=str(boottime) if boottime is not None else None,
            max_skew_s=MAX_SKEW_S,
            checks=checks,
        )
        worst = max((abs(c["skew_s"]) for c in checks), default=0)
        ctx.summary.add("Clock", f"{len(checks)} checks, largest difference {worst} s")

    @staticmethod
    def _floor(ctx: CollectContext) -> tuple[int, str] | None:
        """The newest of this tool's own files and the kit's recorded build time."""
        newest = _newest_mtime(tuple(f"{_TOOL}/{p}" for p in ("agent", "collectors", "manifests")))
        built = ctx.options.tool_built
        if built:
            try:
                ns = parse_reference_time(built)
                if newest is None or ns > newest[0]:
                    newest = (ns, f"kit built {built}")
            except UsageError:
                pass
        return newest
