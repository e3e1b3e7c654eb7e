"""The collector contract: every hook the orchestrator and the command line call.

A collector is one class, found through the ``preserve.collectors`` entry-point group
(collectors/registry.py), built-ins included: adding one is a new module plus one line in
``pyproject.toml``. Subclass :class:`Collector`, set ``name`` (the entry point's name) and
``stage``, and write ``collect``; every other hook has a default that does nothing, so the
orchestrator calls each hook directly and a collector overrides only what it needs."""

from __future__ import annotations

import abc
import enum
from typing import ClassVar

from .context import CollectContext, Options
from .logprofile import LogSource


class Stage(enum.StrEnum):
    """When a collector runs. Members are in RFC 3227 order of volatility, which is the
    order the stages run in: memory-resident state first, then (after network isolation,
    which is not a collector) the slow disk work, and last a disk image (``--image``),
    the slowest of all. The journal names stages by value."""

    VOLATILE = "volatile"
    SLOW = "slow"
    IMAGE = "image"


class Collector(abc.ABC):
    """One source of evidence. A fresh instance serves one run: the command line makes it,
    calls ``configure``, asks for ``sources``; the orchestrator calls ``collect`` in its
    stage; ``--watch`` asks for ``watch_sources``."""

    name: ClassVar[str]  # as given to --only/--skip and recorded in the journal
    stage: ClassVar[Stage]
    order: ClassVar[int] = 50  # lower runs first within the stage
    description: ClassVar[str] = ""
    default: ClassVar[bool] = True  # runs without --only (False: only when asked for)
    # Runs in its own thread, started in its turn, while the rest of its stage goes on
    # (agent/alongside.py): for work done mostly outside this interpreter or without its
    # lock (a walk in a child process; hashing, which releases it).
    alongside: ClassVar[bool] = False

    def configure(self, options: Options) -> None:  # noqa: B027 (optional: no-op default)
        """Take what this collector needs from the run's options. Called once, before
        anything is collected, so that ``sources`` can already answer."""

    def sources(self) -> list[bytes]:
        """The paths this collector reads: the output directory may not be inside any."""
        return []

    def watch_sources(self) -> list[LogSource]:
        """What ``--watch`` keeps following after collection (the logs collector's)."""
        return []

    def prepare(self, ctx: CollectContext) -> None:  # noqa: B027 (optional: no-op default)
        """Called in the orchestrator's thread in this collector's turn, just before
        ``collect`` (which for an ``alongside`` collector then runs in its own thread):
        what a later collector of the stage must find in ``ctx.shared`` from the start,
        such as a hand-off it will wait for (collectors/rundigests.py)."""

    @abc.abstractmethod
    def collect(self, ctx: CollectContext) -> None:
        """Store and journal this collector's evidence through ``ctx``; rows for the
        closing summary box go to ``ctx.summary.add``. A raised exception is journaled as
        this collector's failure and the run goes on with the next one."""
