"""The run's structured log, ``collection.log``: structlog JSON lines inside the evidence.

Writing it must never stop a collection: when the evidence drive fills up, log lines
are dropped (and the journal record of the log counts them) instead of raising."""

from __future__ import annotations

import threading
from typing import Any

import structlog

from manifests.sink import SinkFile


class _SafeWriter:
    def __init__(self, file: SinkFile) -> None:
        self._file: SinkFile | None = file
        self._lock = threading.Lock()
        self.dropped = 0

    def msg(self, message: str) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(message.encode("utf-8", "backslashreplace") + b"\n")
            except OSError:
                self.dropped += 1

    log = debug = info = warning = error = critical = exception = msg

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class RunLog:
    """Owns the log file; ``logger`` is a structlog logger bound to it."""

    def __init__(self, file: SinkFile) -> None:
        self.writer = _SafeWriter(file)
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
