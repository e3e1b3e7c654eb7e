"""What a collector is handed: the evidence directory, the journal, the copy engine and the
run's options. Passed explicitly; collectors keep no global state."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.journal import Journal

from .copy import CopyEngine
from .logprofile import Profile
from .pathmap import stored_relpath
from .ruleset import RuleSet
from .summary import Summary
from .walk import walk_entries


@dataclass(frozen=True)
class Options:
    """What the command line asked of this run, one named field per option a collector may
    read, set once before anything runs and read-only after (so no collector can change
    what the next one sees)."""

    paths: tuple[bytes, ...] = ()  # --path, absolute
    max_file_size: int | None = None  # --max-file-size: larger files are recorded, not copied
    collect_env: bool = False  # --collect-env
    log_profile: Profile | None = None  # --profile, loaded (None: the default profile)
    # --path trees the logs collector reads too (when 'files' does not run, --only logs)
    log_paths: tuple[bytes, ...] = ()
    reference_time: int | None = None  # --reference-time, ns since the epoch
    tool_built: str | None = None  # the kit's recorded build time, when run from a kit
    only: tuple[str, ...] = ()  # the collectors named with --only (asked for explicitly)
    rules: RuleSet | None = None  # finding rules, built-in plus --rules files (None: built-in)
    # --process-memory: bytes of memory per flagged process (None: the default, 0: off)
    process_memory: int | None = None


@dataclass
class CollectContext:
    root: Path
    journal: Journal
    engine: CopyEngine
    options: Options
    log: Any
    # Called regularly by long-running phases (the --watch loop), e.g. to re-check that
    # network isolation still holds. Each must return quickly and never raise.
    periodic: list[Callable[[], None]] = field(default_factory=list)
    # What one collector hands to a later one in the same run, e.g. the volatile snapshot
    # that ``processes`` takes and ``network`` reuses so both describe the same moment.
    shared: dict[str, Any] = field(default_factory=dict)
    # Held while reading-and-updating ``shared``: collectors that run alongside their stage
    # (agent/alongside.py) share it with the stage's thread. Reentrant, so a helper that
    # holds it may call another that takes it.
    lock: threading.RLock = field(default_factory=threading.RLock)
    # The closing box's rows, added by collectors and stage hooks as the run goes.
    summary: Summary = field(default_factory=Summary)

    def error(
        self, collector: str, reason: str, source: bytes | None = None, **fields: Any
    ) -> None:
        self.engine.record_error(collector, source, reason, **fields)

    def preserve_tree(self, source: bytes, prefix: str, collector: str) -> None:
        """Queue a file or a whole tree for copying under ``artifacts/<prefix>/``."""

        def dest(path: bytes) -> str:
            return f"artifacts/{prefix}/{stored_relpath(path)}"

        def on_error(path: bytes, error: OSError) -> None:
            self.error(collector, f"cannot list directory: {error.strerror}", path)

        try:
            st = os.lstat(source)
        except OSError as e:
            self.error(collector, f"cannot stat: {e.strerror}", source)
            return
        if not stat.S_ISDIR(st.st_mode):
            self.engine.submit(source, dest(source), collector)
            return
        self.engine.submit_listed(walk_entries(source, on_error), dest, collector)
