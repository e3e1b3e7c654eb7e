"""Canonical JSON (RFC 8785) for journal records.

Records are hashed and signed as bytes, so every writer and reader must agree on one
serialisation. Our records hold only ASCII keys, strings, booleans, null and integers
below 2**53 (large integers such as nanosecond times are written as strings), and for
that shape the standard library's sorted, compact, non-ASCII-preserving output *is* RFC
8785. That fast path is checked against the ``rfc8785`` reference implementation in the
tests; anything outside the shape goes through the reference implementation itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import rfc8785

from .errors import CanonicalError

MAX_SAFE_INT = 2**53 - 1
_fast = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _plain(obj: Any) -> bool:
    """True when ``obj`` has only the shape for which json.dumps equals RFC 8785.

    Iterative with exact type checks: this runs once per journal record, so it must cost
    a few microseconds, not a recursive call per value."""
    stack = [obj]
    pop, push, many = stack.pop, stack.append, stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind is str or kind is bool or value is None:
            continue
        if kind is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                return False
        elif kind is dict:
            for key, item in value.items():
                if type(key) is not str or not key.isascii():
                    return False
                push(item)
        elif kind is list or kind is tuple:
            many(value)
        else:
            return False
    return True


def dumps(obj: Any, check: Callable[[Any], None] | None = None) -> bytes:
    """Serialise ``obj`` to canonical UTF-8 bytes (no trailing newline).

    ``check`` sees ``obj`` when it is outside the plain shape, before the reference
    implementation does, and may raise to refuse it: the journal refuses floats there,
    at no cost to the plain records that make up nearly all of it."""
    plain = _plain(obj)
    if not plain and check is not None:
        check(obj)
    try:
        if plain:
            return _fast.encode(obj).encode("utf-8")
        return rfc8785.dumps(obj)
    except (ValueError, TypeError, UnicodeEncodeError, rfc8785.CanonicalizationError) as e:
        raise CanonicalError(f"cannot canonicalise record: {e}") from e


def _no_constant(name: str) -> Any:
    raise CanonicalError(f"non-JSON constant {name}")


# A number of 16 digits or more (beyond 2**53 perhaps) where a value starts; a string
# that happens to hold such digits only costs the slower check.
_LONG_NUMBER = re.compile(rb"[:,\[]-?[0-9]{16}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CanonicalError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_float(digits: str) -> float:
    raise _NotPlain


class _NotPlain(Exception):
    """The fast check cannot decide this line (``loads_strict`` takes the full one)."""


def loads_strict(line: bytes) -> Any:
    """Parse one journal line, refusing duplicate keys, NaN/Infinity and non-canonical bytes.

    Nearly every line is ASCII with plain values: for those, parsing with the C decoder
    and encoding again must give back the very bytes (a repeated key would be lost, so
    it cannot), which costs a third of the full check. Any other line, and any line that
    fails, gets the full check and its precise reason."""
    if line.isascii() and not _LONG_NUMBER.search(line):
        try:
            obj = json.loads(line, parse_constant=_no_constant, parse_float=_no_float)
            if _fast.encode(obj).encode("ascii") == line:
                return obj
        except (_NotPlain, CanonicalError, ValueError, RecursionError):
            pass
    return _loads_checked(line)


def _loads_checked(line: bytes) -> Any:
    try:
        obj = json.loads(
            line.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except CanonicalError:
        raise
    except (UnicodeDecodeError, ValueError) as e:
        raise CanonicalError(f"not valid JSON: {e}") from e
    except RecursionError as e:  # a hostile line of 100,000 '['
        raise CanonicalError("not valid JSON: nested too deeply") from e
    if dumps(obj) != line:
        raise CanonicalError("not in canonical form (RFC 8785)")
    return obj
