"""Loading collectors (and isolation methods) from entry points.

Built-ins are declared in the same entry-point group that third parties use, so adding a
collector never means editing the core. A plug-in that fails to load, or that loads but
does not keep the collector contract (collectors/base.py), is reported and skipped, never
fatal."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib import metadata
from typing import Any

from .base import Collector, Stage

COLLECTORS_GROUP = "preserve.collectors"


def load_group(group: str, on_failure: Callable[[str, Exception], None]) -> dict[str, Any]:
    loaded: dict[str, Any] = {}
    for entry in metadata.entry_points(group=group):
        try:
            loaded[entry.name] = entry.load()
        except Exception as e:  # a broken plug-in must not stop a collection
            on_failure(entry.name, e)
    return loaded


def load_collectors(on_failure: Callable[[str, Exception], None]) -> dict[str, type[Collector]]:
    collectors: dict[str, type[Collector]] = {}
    for name, loaded in load_group(COLLECTORS_GROUP, on_failure).items():
        try:
            collectors[name] = _checked(name, loaded)
        except TypeError as e:
            on_failure(name, e)
    return collectors


def _checked(name: str, loaded: object) -> type[Collector]:
    """Refuse, at load time, what the orchestrator could not run: a wrong stage would
    otherwise mean a collector silently never runs, a wrong name one --only cannot pick."""
    if not (isinstance(loaded, type) and issubclass(loaded, Collector)):
        raise TypeError("not a collector class (subclass collectors.base.Collector)")
    if inspect.isabstract(loaded):
        raise TypeError("it does not define collect()")
    if getattr(loaded, "name", None) != name:
        raise TypeError(
            f"its name is {getattr(loaded, 'name', None)!r}, its entry point's {name!r}"
        )
    if not isinstance(getattr(loaded, "stage", None), Stage):
        raise TypeError(f"its stage must be one of {', '.join(f'Stage.{s.name}' for s in Stage)}")
    return loaded
