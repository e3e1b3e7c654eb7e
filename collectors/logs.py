"""``logs``: the host's standard log locations, preserved byte-exact."""

from __future__ import annotations

import os
from typing import ClassVar

from .context import CollectContext

STANDARD_LOG_DIRS = (b"/var/log", b"/run/log/journal")


class LogsCollector:
    name: ClassVar[str] = "logs"
    stage: ClassVar[str] = "slow"
    order: ClassVar[int] = 10
    description: ClassVar[str] = "standard log locations (/var/log, journald)"

    def sources(self) -> list[bytes]:
        return [p for p in STANDARD_LOG_DIRS if os.path.lexists(p)]

    def collect(self, ctx: CollectContext) -> None:
        for path in self.sources():
            ctx.preserve_tree(path, "logs", self.name)
        ctx.engine.drain()
