"""Loading collectors (and, later, isolation hooks) from entry points.

Built-ins are declared in the same entry-point group that third parties use, so adding a
collector never means editing the core. A plug-in that fails to load is reported and
skipped, never fatal."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

COLLECTORS_GROUP = "preserve.collectors"


def load_group(group: str, on_failure: Callable[[str, Exception], None]) -> dict[str, Any]:
    loaded: dict[str, Any] = {}
    for entry in metadata.entry_points(group=group):
        try:
            loaded[entry.name] = entry.load()
        except Exception as e:  # a broken plug-in must not stop a collection
            on_failure(entry.name, e)
    return loaded


def load_collectors(on_failure: Callable[[str, Exception], None]) -> dict[str, Any]:
    return load_group(COLLECTORS_GROUP, on_failure)
