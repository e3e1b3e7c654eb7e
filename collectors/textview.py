"""Helpers shared by the volatile collectors' outputs: JSON Lines and terminal-safe text.

Process names, argv, socket paths and journal strings are attacker-controlled; a text
view read with ``cat`` in a terminal, or a line this tool prints, must not carry escape
sequences, line breaks or bidirectional overrides (U+202E turns "exe.txt" around), so
``printable`` escapes every character that is not printable. It is the one rule for the
whole tool: the console uses it too."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(c: str, named: bool) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte in a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if named and c in _NAMED:
        return _NAMED[c]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: Any, named: bool = False) -> str:
    """``value`` as text with every non-printable character (``str.isprintable``: controls,
    C1, line and paragraph separators, bidi and other format characters, surrogates)
    escaped as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; ``named=True`` writes tab,
    newline and carriage return as ``\\t``, ``\\n`` and ``\\r`` (how the console
    shows them, as Python does). None is the empty string."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c, named) for c in text)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 item``, ``2 items``, ``1,024 items``: one rule for every count people read."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


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
