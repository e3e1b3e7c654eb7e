"""The run's structured log, ``collection.log``: structlog JSON lines inside the evidence.

Writing it must never stop a collection: when the evidence drive fills up, log lines
are dropped (and the journal record of the log counts them) instead of raising."""

from __future__ import annotations

import os
import threading
from typing import Any

import structlog


class _SafeWriter:
    def __init__(self, path: os.PathLike[str]) -> None:
        self._fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        self._lock = threading.Lock()
        self.dropped = 0

    def msg(self, message: str) -> None:
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, message.encode("utf-8", "backslashreplace") + b"\n")
            except OSError:
                self.dropped += 1

    log = debug = info = warning = error = critical = exception = msg

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class RunLog:
    """Owns the log file; ``logger`` is a structlog logger bound to it."""

    def __init__(self, path: os.PathLike[str]) -> None:
        self.writer = _SafeWriter(path)
        self.logger: Any = structlog.wrap_logger(
            self.writer,
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )

    def close(self) -> None:
        self.writer.close()
