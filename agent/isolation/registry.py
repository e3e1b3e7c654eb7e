"""Choosing the isolation method: built-ins and plug-ins from the ``preserve.isolation``
entry-point group (the built-ins are declared there too), plus ``exec:PATH`` hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collectors.registry import load_group

from .base import Method, MethodError
from .exec_hook import ExecHookMethod

ISOLATION_GROUP = "preserve.isolation"


def available(on_failure: Callable[[str, Exception], None]) -> dict[str, Any]:
    return load_group(ISOLATION_GROUP, on_failure)


def choose(name: str, on_failure: Callable[[str, Exception], None]) -> Method:
    if name.startswith("exec:"):
        method: Method = ExecHookMethod(name[5:])
        try:
            method.viable()
        except MethodError as e:
            raise MethodError(f"--isolation-method {name}: {e}") from e
        return method
    classes = available(on_failure)
    if name == "auto":
        reasons = []
        for cls in sorted(classes.values(), key=lambda c: -c.priority):
            if cls.priority <= 0:
                continue
            candidate = cls()
            try:
                candidate.viable()
            except MethodError as e:
                reasons.append(f"{cls.name}: {e}")
                continue
            return candidate
        raise MethodError(
            "no isolation method works here (" + "; ".join(reasons) + ")",
            hint="install nftables or iptables, or choose --isolation-method link-down or "
            "exec:PATH",
        )
    if name not in classes:
        known = ", ".join(sorted(classes) + ["auto", "exec:PATH"])
        raise MethodError(f"unknown --isolation-method {name}", hint=f"known: {known}")
    method = classes[name]()
    try:
        method.viable()
    except MethodError as e:
        raise MethodError(f"--isolation-method {name} cannot run here: {e}") from e
    return method
