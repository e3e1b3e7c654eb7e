"""The two process-wide settings the watch changes, changed here only: ``ProcessSettings``.

* **Open-file limit** (``RLIMIT_NOFILE``): its soft limit is raised to the hard limit, as
  every followed log is held open (so that a rotated or deleted one can still be read).
* **Interpreter switch interval** (``sys.setswitchinterval``): ``WATCH_SWITCH`` (0.5 ms,
  the default is 5 ms) during the watch, so that a process the truncation guard holds
  never waits long behind the other threads' work; ``HOT_PAUSE`` (0.1 ms) while a log is
  hot, so that a poll without pause is never more than that late.

``apply`` saves both and changes them when the watch starts, ``restore`` puts both back
when it ends (and makes any later ``hot`` call a no-op, should the follow thread still
run); other modules never call ``setrlimit`` or ``setswitchinterval``.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import threading

HOT_PAUSE = 0.0001  # seconds between two polls of a hot log, at most (interpreter switch)
WATCH_SWITCH = 0.0005  # interpreter switch interval during the watch (default 0.005)


class ProcessSettings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._switch: float | None = None  # the interval before the watch, while applied
        self._nofile: tuple[int, int] | None = None  # the limits before the watch
        self._hot = False

    def apply(self) -> int:
        """Change both settings; returns the open-file limit the watch now has."""
        with self._lock:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if self._switch is None:
                self._switch = sys.getswitchinterval()
                self._nofile = (soft, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
            sys.setswitchinterval(WATCH_SWITCH)
            self._hot = False
            return soft

    def hot(self, on: bool) -> None:
        """A log is being polled without pause (``on``), or no longer."""
        if on == self._hot:  # the follow thread's every round: no lock
            return
        with self._lock:
            if self._switch is None:
                return  # restored already
            sys.setswitchinterval(HOT_PAUSE if on else WATCH_SWITCH)
            self._hot = on

    def restore(self) -> None:
        """Put both settings back as they were before ``apply``."""
        with self._lock:
            if self._switch is None:
                return
            sys.setswitchinterval(self._switch)
            if self._nofile is not None:
                with contextlib.suppress(ValueError, OSError):
                    resource.setrlimit(resource.RLIMIT_NOFILE, self._nofile)
            self._switch = self._nofile = None
            self._hot = False
