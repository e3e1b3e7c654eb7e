"""Ctrl-C, SIGTERM and SIGHUP during a collection: stop collecting, never stop sealing.

The first stop signal asks the run to stop: copies in progress end at their next chunk
(``on_stop``), and the orchestrator raises ``Interrupted`` at its next safe point
(``check``), between collectors, never inside one. Nothing is raised from the signal
handler itself: an exception landing between a lock's acquire and the block that
releases it would hang the run. From then on, through the whole closing of the evidence
directory, signals are held: the second one only says that sealing is under way, the
third aborts at once, says so, and leaves the evidence signed up to its last seal, as a
killed run does. A responder who presses Ctrl-C twice by reflex must not lose the seal."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ABORT_EXIT = 130


class Interrupted(BaseException):
    """A stop signal; like KeyboardInterrupt, no ``except Exception`` may swallow it."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class StopGuard:
    """Installs the handlers for the length of a ``with`` block and restores them after.

    ``on_stop`` (set by the run once it has a copy engine) makes work in other threads
    stop promptly; it must not take a lock. Messages are written straight to stderr for
    the same reason (the console's own lock may be held by the interrupted code)."""

    def __init__(self) -> None:
        self.on_stop: Callable[[], None] = lambda: None
        self.requested: str | None = None
        self.received: list[str] = []  # every stop signal, in order
        self._held = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopGuard:
        self._previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def since(self) -> Callable[[], str | None]:
        """A look at the stop signals from now on (the first one's name, or None)."""
        seen = len(self.received)
        return lambda: self.received[seen] if len(self.received) > seen else None

    def check(self) -> None:
        """Raise ``Interrupted`` here, at a safe point, if a stop signal came."""
        if self.requested is not None:
            raise Interrupted(self.requested)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if self.requested is None:
            self.requested = name
            self.on_stop()
            return
        self._held += 1
        if self._held == 1:
            _say(
                f"{name} received: still stopping and sealing the evidence, please wait; "
                "a third one aborts without the final seal"
            )
            return
        _say(
            f"{name} received a third time: aborted. The evidence is signed up to its last "
            "seal; 'verify' will show the unsealed tail"
        )
        os._exit(ABORT_EXIT)


def _say(text: str) -> None:
    os.write(2, f"WARNING: {text}\n".encode())
