"""The collector contract: a name, a stage, and one ``collect`` call.

Stages run in RFC 3227 order of volatility: ``volatile`` (memory-resident state) before
``isolation`` before ``slow`` (disk work). Within a stage, lower ``order`` runs first."""

from __future__ import annotations

from typing import ClassVar, Protocol

from .context import CollectContext

STAGES = ("volatile", "slow")


class Collector(Protocol):
    name: ClassVar[str]
    stage: ClassVar[str]
    order: ClassVar[int]
    description: ClassVar[str]

    def collect(self, ctx: CollectContext) -> None: ...
