"""``SHA256SUMS`` in the exact format of coreutils ``sha256sum``, so ``sha256sum -c`` works.

coreutils escapes a name holding a backslash, newline or carriage return: the line then
starts with a backslash and the name has ``\\\\``, ``\\n`` and ``\\r``."""

from __future__ import annotations

from collections.abc import Iterable


def _escape(name: str) -> tuple[str, str]:
    if not any(c in name for c in "\\\n\r"):
        return "", name
    return "\\", name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def format_sums(entries: Iterable[tuple[str, str]]) -> bytes:
    """``entries`` are (relative path, hex digest); output is sorted by path."""
    lines = []
    for path, digest in sorted(entries):
        prefix, name = _escape(path)
        lines.append(f"{prefix}{digest}  {name}\n")
    return "".join(lines).encode("utf-8")


def line_size(path: str) -> int:
    """Bytes the line of ``path`` takes in ``SHA256SUMS`` (room kept for it on the drive)."""
    prefix, name = _escape(path)
    return len(prefix) + 64 + 2 + len(name.encode("utf-8")) + 1


def _unescape(name: str) -> str:
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if c == "\\" and i + 1 < len(name):
            out.append({"\\": "\\", "n": "\n", "r": "\r"}.get(name[i + 1], "\\" + name[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_sums(data: bytes) -> dict[str, str]:
    """Return {path: digest}; raises ValueError on a malformed or duplicated line."""
    result: dict[str, str] = {}
    for number, raw in enumerate(data.decode("utf-8").split("\n")[:-1], start=1):
        escaped = raw.startswith("\\")
        line = raw[1:] if escaped else raw
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"line {number} is not '<sha256>  <name>'")
        name = _unescape(name) if escaped else name
        if name in result:
            raise ValueError(f"line {number} repeats {name!r}")
        result[name] = digest
    if data and not data.endswith(b"\n"):
        raise ValueError("last line is incomplete")
    return result
