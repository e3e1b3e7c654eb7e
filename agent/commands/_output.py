"""Where a report or export goes: stdout, or a file that must not be inside the evidence
directory (an extra file there would make ``verify`` report it as unexpected)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from manifests.errors import OutputError, UsageError


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
