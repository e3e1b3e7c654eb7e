"""Everything the responder reads on the terminal.

Stage lines and warnings go to stderr; the summary box goes to stderr too, so that with
``--json`` stdout carries exactly one JSON object. Live progress is redrawn twice a second
when stderr is a terminal; elsewhere (a log file, the fleet run) it is one heartbeat line
every 30 s. Colour only on a terminal, and never with ``NO_COLOR``."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, TextIO

import click

from collectors.textview import plural
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


HEARTBEAT_SECONDS = 30.0  # a non-terminal stderr: one progress line this often
REDRAW_SECONDS = 0.5


def human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:02.0f} min"


class Estimate(NamedTuple):
    """What the pre-flight scan expects the stage to read; ``at_least`` when the scan
    was cut short for time (the real total is larger)."""

    items: int
    bytes: int
    at_least: bool = False


def progress_line(items: int, done: int, elapsed: float, total: Estimate | None) -> str:
    """One progress reading in words: items and bytes done (of the estimate when there
    is one), the rate, and the time left while the estimate still holds."""
    rate = done / max(elapsed, 1e-6)
    if total is None or total.bytes <= 0:
        return f"{plural(items, 'item')}  {human_bytes(done)}  {human_bytes(rate)}/s"
    of = "at least " if total.at_least else ""
    counted = f"{items:,} of {of}{plural(total.items, 'item')}"
    parts = [counted, f"{human_bytes(done)} of {of}{human_bytes(total.bytes)}"]
    if not total.at_least and done <= total.bytes:
        parts[-1] += f" ({100 * done // total.bytes}%)"
    parts.append(f"{human_bytes(rate)}/s")
    if done < total.bytes and rate > 0 and elapsed >= 1:
        left = (total.bytes - done) / rate
        parts.append(f"{'at least ' if total.at_least else 'about '}{human_duration(left)} left")
    return "  ".join(parts)


class Console:
    def __init__(
        self,
        quiet: bool = False,
        json_mode: bool = False,
        stream: TextIO | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.stream = stream or sys.stderr
        self.heartbeat = heartbeat
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

    def plain(self, text: str) -> None:
        if not self.quiet:
            self._line(text)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._line(f"      {text}")

    def warn(self, text: str) -> None:
        if not self.quiet:
            self._line(self._style("WARNING: ", fg="yellow", bold=True) + text)

    def error(self, text: str) -> None:
        if not self.silent:
            self._line(self._style("ERROR: ", fg="red", bold=True) + text)

    def start_progress(
        self, snapshot: Callable[[], tuple[int, int]], total: Estimate | None = None
    ) -> None:
        """Show items and bytes done in this stage (``snapshot`` gives the running totals
        of the run), of ``total`` when it is known, with the rate and the time left:
        redrawn in place on a terminal, one heartbeat line every ``heartbeat`` seconds
        elsewhere. Nothing at all when quiet or with ``--json``."""
        if self.quiet:
            return
        self._stop.clear()
        items0, bytes0 = snapshot()
        began = time.monotonic()

        def reading() -> str:
            items, done = snapshot()
            return progress_line(items - items0, done - bytes0, time.monotonic() - began, total)

        def redraw() -> None:
            width = 0
            while not self._stop.wait(REDRAW_SECONDS):
                text = f"      {reading()}"
                self.stream.write("\r" + text.ljust(width))
                width = len(text)
                self.stream.flush()
            self.stream.write("\r" + " " * width + "\r")

        def heartbeat() -> None:
            while not self._stop.wait(self.heartbeat):
                self._line(f"      progress: {reading()}")

        self._progress = threading.Thread(target=redraw if self.tty else heartbeat, daemon=True)
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
