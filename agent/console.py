"""Everything the responder reads on the terminal.

Stage lines and warnings go to stderr; the summary box goes to stderr too, so that with
``--json`` stdout carries exactly one JSON object. Live progress is drawn only when stderr
is a terminal, and colour only then and never with ``NO_COLOR``."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import click

from collectors.textview import printable as _printable


def printable(text: str) -> str:
    """Printable text only: names and journal strings come from possibly hostile hands,
    and a newline, carriage return or escape sequence in them could forge or hide lines
    of this report on the terminal. The one rule (``collectors.textview.printable``),
    with tab, newline and carriage return written as Python does."""
    return _printable(text, named=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Console:
    def __init__(
        self, quiet: bool = False, json_mode: bool = False, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet or json_mode
        self.silent = json_mode
        self.tty = self.stream.isatty()
        self.colour = self.tty and "NO_COLOR" not in os.environ
        self._progress: threading.Thread | None = None
        self._stop = threading.Event()

    def _style(self, text: str, **kw: object) -> str:
        return click.style(text, **kw) if self.colour else text  # type: ignore[arg-type]

    def _line(self, text: str) -> None:
        click.echo(text, file=self.stream)

    def stage(self, number: int, total: int, text: str) -> None:
        if not self.quiet:
            self._line(self._style(f"[{number}/{total}] {text} ...", bold=True))

    def info(self, text: str) -> None:
        if not self.quiet:
            self._line(f"      {text}")

    def warn(self, text: str) -> None:
        if not self.quiet:
            self._line(self._style("WARNING: ", fg="yellow", bold=True) + text)

    def error(self, text: str) -> None:
        if not self.silent:
            self._line(self._style("ERROR: ", fg="red", bold=True) + text)

    def start_progress(self, snapshot: Callable[[], tuple[int, int]]) -> None:
        """Redraw items and bytes done and the rate twice a second, on a terminal only."""
        if self.quiet or not self.tty:
            return
        self._stop.clear()

        def draw() -> None:
            began = time.monotonic()
            while not self._stop.wait(0.5):
                items, done = snapshot()
                rate = done / max(time.monotonic() - began, 1e-6)
                self.stream.write(
                    f"\r      {items:,} items  {human_bytes(done)}  {human_bytes(rate)}/s   "
                )
                self.stream.flush()
            self.stream.write("\r" + " " * 60 + "\r")

        self._progress = threading.Thread(target=draw, daemon=True)
        self._progress.start()

    def stop_progress(self) -> None:
        if self._progress:
            self._stop.set()
            self._progress.join()
            self._progress = None

    def box(self, title: str, rows: list[tuple[str, str]], highlight: set[str]) -> None:
        """The closing summary; ``highlight`` rows are the ones for the paper form."""
        if self.silent:
            return
        width = max(len(k) for k, _ in rows)
        body = []
        for key, value in rows:
            text = f"  {key.ljust(width)}  {value}"
            body.append(self._style(text, bold=True) if key in highlight else text)
        rule = "=" * min(78, max(len(title) + 4, *(len(r) for r in body)))
        self._line(rule)
        self._line(f"  {title}")
        self._line(rule)
        for line in body:
            self._line(line)
        self._line(rule)
