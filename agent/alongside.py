"""Collectors that run in their own thread while the rest of their stage goes on.

A collector whose work is mostly waiting for something outside this interpreter (the
timeline: a walk in a child process on the other core; packages: hashing, which
releases the interpreter's lock) says so with ``Collector.alongside``; the orchestrator
starts it in its turn and waits for it before the stage is sealed, so a seal still
covers everything its stage did. It stores through the same copy engine and journal as
the others, which take their own locks; the evidence writer is never used by two
collectors in a way it is not by the engine's own worker threads already. What such a
thread raised that must end the run (a full drive, the evidence gone) is raised again in
the orchestrator's thread when it waits."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Alongside:
    """The collectors of one stage still running in their own threads."""

    def __init__(self) -> None:
        self._running: list[tuple[threading.Thread, list[BaseException]]] = []

    def start(self, name: str, run: Callable[[], None]) -> None:
        caught: list[BaseException] = []

        def target() -> None:
            try:
                run()
            except BaseException as e:  # noqa: BLE001 (raised again by ``wait``)
                caught.append(e)

        thread = threading.Thread(target=target, name=f"collector-{name}", daemon=True)
        thread.start()
        self._running.append((thread, caught))

    def wait(self, reraise: bool = True) -> None:
        """Wait for every one of them; then raise the first exception one of them
        raised (with ``reraise``; without, while another exception is on its way)."""
        running, self._running = self._running, []
        first: BaseException | None = None
        for thread, caught in running:
            thread.join()
            if caught and first is None:
                first = caught[0]
        if first is not None and reraise:
            raise first
