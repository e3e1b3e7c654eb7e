"""Helpers shared by the volatile collectors' outputs: JSON Lines and terminal-safe text.

Process names, argv and socket paths are attacker-controlled; a text view read with
``cat`` in a terminal must not carry escape sequences, so every control character is
shown as ``\\xNN``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(value: Any) -> str:
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)


def jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, sort_keys=True).encode("ascii") + b"\n" for r in rows)


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, indent=1).encode("ascii") + b"\n"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], last_free: bool = True) -> str:
    """Columns padded to their widest cell; the last column (a command line) is not."""
    cells = [[printable(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row[:-1] if last_free else row):
            widths[i] = max(widths[i], len(c))

    def line(row: Sequence[str]) -> str:
        padded = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)]) + "\n"
