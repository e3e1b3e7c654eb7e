"""``SHA256SUMS`` in the exact format of coreutils ``sha256sum``, so ``sha256sum -c`` works.

coreutils escapes a name holding a backslash, newline or carriage return: the line then
starts with a backslash and the name has ``\\\\``, ``\\n`` and ``\\r``.

Two signed listings are checked with the same two functions, ``parse_sums`` and
``compare_sums``: an evidence directory's (against its journal, in ``verify``) and the
responder kit's (against its own files, in the kit's self-check)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


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


@dataclass(frozen=True)
class SumsDiff:
    """How a listing and what it describes differ; each list sorted. False when they agree."""

    only_listed: list[str]  # in the listing, not there
    not_listed: list[str]  # there, not in the listing
    differ: list[str]  # in both, with another digest

    def __bool__(self) -> bool:
        return bool(self.only_listed or self.not_listed or self.differ)


def compare_sums(listed: Mapping[str, str], actual: Mapping[str, str | None]) -> SumsDiff:
    """Compare a parsed listing with ``actual``: every path that is there, with its
    digest, or None where it was not computed (a file that is not listed need not be
    hashed; a listed one without a digest counts as differing)."""
    return SumsDiff(
        only_listed=sorted(listed.keys() - actual.keys()),
        not_listed=sorted(actual.keys() - listed.keys()),
        differ=sorted(p for p in listed.keys() & actual.keys() if actual[p] != listed[p]),
    )
