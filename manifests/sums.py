"""``SHA256SUMS`` in the exact format of coreutils ``sha256sum``, so ``sha256sum -c`` works.

coreutils escapes a name holding a backslash, newline or carriage return: the line then
starts with a backslash and the name has ``\\\\``, ``\\n`` and ``\\r``.

Two signed listings are checked with the same two functions, ``parse_sums`` and
``compare_sums``: an evidence directory's (against its journal, in ``verify``) and the
responder kit's (against its own files, in the kit's self-check). An evidence directory's
listing of a million files is 100 MB, so it is also written line by line (``sums_line``)
and read line by line (``iter_sums``) without ever being held whole."""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO

# Longer lines are refused: no genuine stored path comes near (5,000 levels is 10 KB).
MAX_SUMS_LINE = 8 * 1024 * 1024
_HEX64 = re.compile("[0-9a-f]{64}")


def _escape(name: str) -> tuple[str, str]:
    if not any(c in name for c in "\\\n\r"):
        return "", name
    return "\\", name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def sums_line(path: str, digest: str) -> bytes:
    """One line of a listing, escaped as coreutils does."""
    prefix, name = _escape(path)
    return f"{prefix}{digest}  {name}\n".encode()


def format_sums(entries: Iterable[tuple[str, str]]) -> bytes:
    """``entries`` are (relative path, hex digest); output is sorted by path."""
    return b"".join(sums_line(path, digest) for path, digest in sorted(entries))


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


def iter_sums(stream: IO[bytes]) -> Iterator[tuple[int, str, str]]:
    """(line number, path, digest) of each line read from ``stream``, one line at a time.

    Raises ValueError on a malformed, overlong or incomplete line. Repeated names are the
    caller's to find: remembering every name is what this function exists to avoid."""
    for number in itertools.count(1):
        raw = stream.readline(MAX_SUMS_LINE + 1)
        if not raw:
            return
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_SUMS_LINE:
                raise ValueError(f"line {number} is longer than {MAX_SUMS_LINE} bytes")
            raise ValueError("last line is incomplete")
        text = raw[:-1].decode("utf-8")
        escaped = text.startswith("\\")
        line = text[1:] if escaped else text
        digest, sep, name = line.partition("  ")
        if not sep or not _HEX64.fullmatch(digest):
            raise ValueError(f"line {number} is not '<sha256>  <name>'")
        yield number, (_unescape(name) if escaped else name), digest


def parse_sums(data: bytes) -> dict[str, str]:
    """Return {path: digest}; raises ValueError on a malformed or duplicated line."""
    result: dict[str, str] = {}
    for number, name, digest in iter_sums(io.BytesIO(data)):
        if name in result:
            raise ValueError(f"line {number} repeats {name!r}")
        result[name] = digest
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
