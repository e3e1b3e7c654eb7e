"""``files``: preserve the files and trees named with ``--path``."""

from __future__ import annotations

from typing import ClassVar

from .base import Collector, Stage
from .context import CollectContext


class FilesCollector(Collector):
    name: ClassVar[str] = "files"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 90
    default: ClassVar[bool] = False  # runs when --path is given
    description: ClassVar[str] = "files and directory trees given with --path"

    def collect(self, ctx: CollectContext) -> None:
        for path in ctx.options.paths:
            ctx.preserve_tree(path, "files", self.name)
        ctx.engine.drain()
