"""Click parameter types shared by the subcommands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from manifests.errors import UsageError

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class ByteSize(click.ParamType):
    """``500``, ``64K``, ``100M``, ``2G`` (binary units)."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)(i?[bB])?\s*", str(value))
        if not match:
            self.fail(f"{value!r} is not a size such as 500, 64K, 100M or 2G", param, ctx)
        return int(match.group(1)) * _UNITS[match.group(2).lower()]


class SizeOrOff(ByteSize):
    """``--process-memory``: a size as ``ByteSize`` takes it, or ``off`` (0)."""

    name = "size|off"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, str) and value.strip().lower() == "off":
            return 0
        size = super().convert(value, param, ctx)
        if size == 0:
            self.fail("give a size above 0, or 'off'", param, ctx)
        return size


class Duration(click.ParamType):
    """``90``, ``90s``, ``15m``, ``2h`` -> seconds."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
        if not match:
            self.fail(f"{value!r} is not a duration such as 90, 90s, 15m or 2h", param, ctx)
        return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def apply_options(f: Any, options: list[Any]) -> Any:
    """Decorate ``f`` with click options given as a list, in the list's order."""
    for option in reversed(options):
        f = option(f)
    return f


def split_names(values: tuple[str, ...]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


class OutputDir(click.Path):
    """``-o``: a local directory (``click.Path``), or ``sftp://USER@HOST[:PORT]/PATH``
    (an ``agent.sinks.SftpTarget``)."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from .sinks import is_remote, parse_target

        if isinstance(value, str) and is_remote(value):
            try:
                return parse_target(value)
            except UsageError as e:
                self.fail(str(e), param, ctx)
        return super().convert(value, param, ctx)
