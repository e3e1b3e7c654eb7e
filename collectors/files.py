"""``files``: preserve the files and trees named with ``--path``."""

from __future__ import annotations

from typing import ClassVar

from .context import CollectContext


class FilesCollector:
    name: ClassVar[str] = "files"
    stage: ClassVar[str] = "slow"
    order: ClassVar[int] = 90
    description: ClassVar[str] = "files and directory trees given with --path"

    def collect(self, ctx: CollectContext) -> None:
        for path in ctx.options.paths:
            ctx.preserve_tree(path, "files", self.name)
        ctx.engine.drain()
