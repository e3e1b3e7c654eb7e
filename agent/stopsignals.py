"""Ctrl-C, SIGTERM and SIGHUP during a collection: stop collecting, never stop sealing.

The first stop signal interrupts the collection (``Interrupted`` is raised in the main
thread, once). From then on, and through the whole closing of the evidence directory,
signals are held: the second one only says that sealing is under way, the third aborts
at once, says so, and leaves the evidence signed up to its last seal, as a killed run
does. A responder who presses Ctrl-C twice by reflex must not lose the final seal."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
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

    Until ``arm()`` (while the evidence directory and its start seal are being made) a
    signal is only remembered, and ``arm()`` raises it: so the first thing a stopped run
    ever leaves is a sealed start record. ``deferred()`` does the same around a step that
    must not stop half-way (applying network isolation). ``hold()`` starts the phase in
    which nothing may interrupt (sealing); ``say`` prints the held-signal messages."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._armed = False
        self._holding = False
        self._deferred: str | None = None
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

    def arm(self) -> None:
        """The start is sealed: the next stop signal interrupts (one that came before does
        so now)."""
        self._armed = True
        if self._deferred is not None and not self._holding:
            self._holding = True
            raise Interrupted(self._deferred)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A signal inside the block interrupts only once the block is done."""
        self._armed = False
        try:
            yield
        finally:
            self.arm()

    def hold(self) -> None:
        """From now on no signal interrupts: the directory is being sealed."""
        self._holding = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self._armed:
            self._deferred = self._deferred or name
            return
        if not self._holding:
            self._holding = True
            raise Interrupted(name)
        self._held += 1
        if self._held == 1:
            self._say(
                f"{name} received: still sealing the evidence, please wait; a third one "
                "aborts without the final seal"
            )
            return
        self._say(
            f"{name} received a third time: aborted. The evidence is signed up to its last "
            "seal; 'verify' will show the unsealed tail"
        )
        sys.stderr.flush()
        os._exit(ABORT_EXIT)
