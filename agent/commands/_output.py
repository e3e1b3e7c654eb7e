"""Where a report or export goes: stdout, or a file that must not be inside the evidence
directory (an extra file there would make ``verify`` report it as unexpected)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from manifests.errors import OutputError, UsageError

OUTPUT_HELP = "Write here instead of stdout (not inside the evidence directory)."


def output_option(help: str = OUTPUT_HELP, directory: bool = False) -> Any:
    """The one ``-o, --output`` option: FILE for what a command writes (report, export),
    DIR for where it looks or writes a directory (release, keygen)."""
    return click.option(
        "-o",
        "--output",
        metavar="DIR" if directory else "FILE",
        type=click.Path(file_okay=not directory, dir_okay=directory, path_type=Path),
        help=help,
    )


def check_output(evidence_dir: Path, output: Path | None) -> None:
    if output is None:
        return
    root = os.path.realpath(evidence_dir)
    target = os.path.realpath(output)
    if target == root or target.startswith(root + os.sep):
        raise UsageError(
            f"-o {output} is inside the evidence directory, where an extra file would make "
            "verify fail",
            hint="write it elsewhere",
        )


def write_output(text: str | bytes, output: Path | None) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if output is None:
        sys.stdout.buffer.write(data)
        return
    try:
        output.write_bytes(data)
    except OSError as e:
        raise OutputError(
            f"cannot write {output}: {e.strerror}", hint="choose another -o path"
        ) from e


@contextlib.contextmanager
def output_stream(output: Path | None) -> Iterator[IO[bytes]]:
    """Where a streamed export goes: stdout, or the file ``output``, which is removed
    again if the export fails half-way (a partial export must not pass for a whole one)."""
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        stream = open(output, "wb")  # noqa: SIM115 (closed below, removed on failure)
    except OSError as e:
        raise OutputError(
            f"cannot write {output}: {e.strerror}", hint="choose another -o path"
        ) from e
    try:
        with stream:
            yield stream
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(output)
        raise
