"""Bounds on what a report or an export keeps of evidence it cannot trust.

A journal line may be 8 MiB and still chain; a stored JSON file may be nested a million
levels deep. Parsing must not recurse without bound (``RecursionError``), and what is
kept must not grow with what an attacker wrote: ``clip`` copies a value within a budget
and a depth, so that every later step (building the report, ``str()``, ``json.dumps``)
works on something small and shallow."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

MAX_DEPTH = 32  # genuine records and volatile files nest fewer than 8 levels
MAX_TEXT = 32 * 1024  # characters of one string (a path 5,000 levels deep fits)
NODE_COST = 64  # budget units a value costs besides its text: about its bytes in memory
CLIPPED = "(clipped)"


class JSONTooDeepError(ValueError):
    """A JSON text nests deeper than the parser goes without recursing too far."""


def loads(data: bytes | str) -> Any:
    """``json.loads`` that fails with ``ValueError`` on every bad input, deep nesting
    included (the C parser raises ``RecursionError`` past about 1,000 levels)."""
    try:
        return json.loads(data)
    except RecursionError as e:
        raise JSONTooDeepError("nested too deeply") from e


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: evidence may hold a list or
    a string where a reader expects an object."""
    return value if isinstance(value, dict) else {}


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """A scalar as text for people, at most ``limit`` characters; containers are not
    spelled out (their ``str()`` could recurse or be huge)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "..."
    if value is None or isinstance(value, (bool, int, float)):
        return str(value) if not isinstance(value, int) or abs(value) < 10**100 else "?"
    return "?"


def clip(value: Any, budget: int = 16 * 1024, depth: int = MAX_DEPTH) -> Any:
    """A copy of a JSON value within ``budget`` and ``depth``; see ``clip_counted``."""
    return clip_counted(value, budget, depth)[0]


def clip_counted(value: Any, budget: int, depth: int = MAX_DEPTH) -> tuple[Any, int, bool]:
    """A copy of a JSON value that costs at most about ``budget`` units (``NODE_COST`` a
    value plus the length of its text) and nests at most ``depth`` levels; with what the
    copy cost and whether anything was cut.

    Breadth first, so the top-level keys (the ones the report reads) are kept whole and
    only the bulk below them is cut: deeper values become ``CLIPPED``, a list that does
    not fit ends with ``CLIPPED``, a dict that does not fit loses its last keys. Values
    within the bounds are copied unchanged."""
    left, cut = budget, False

    def scalar(v: Any) -> Any:
        nonlocal left, cut
        if isinstance(v, str):
            left -= NODE_COST + min(len(v), MAX_TEXT)
            if len(v) <= MAX_TEXT:
                return v
            cut = True
            return v[:MAX_TEXT] + "..."
        left -= NODE_COST
        return v

    if not isinstance(value, (dict, list)):
        copy = scalar(value)
        return copy, budget - left, cut
    root: Any = {} if isinstance(value, dict) else []
    queue: deque[tuple[Any, Any, int]] = deque([(value, root, 1)])
    while queue:
        source, target, level = queue.popleft()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if left <= 0:
                if isinstance(target, list):
                    target.append(CLIPPED)
                cut = True
                break
            if isinstance(target, dict):
                key = scalar(key)
            if isinstance(item, (dict, list)):
                left -= NODE_COST
                if level >= depth:
                    child: Any = CLIPPED
                    cut = True
                else:
                    child = {} if isinstance(item, dict) else []
                    queue.append((item, child, level + 1))
            else:
                child = scalar(item)
            if isinstance(target, dict):
                target[key] = child
            else:
                target.append(child)
    return root, budget - left, cut
