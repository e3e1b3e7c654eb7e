"""``logs``: every log the profile names, byte-exact, each file stored once.

Sources come from a profile (``collectors/profiles/*.toml``, ``--profile``). Rotated and
compressed generations are stored as they are, never decompressed. A live log is copied
up to its size at open (the copy engine records ``size_at_open`` and ``grew``). Every
artifact carries the source's device and inode; a file met again under another name (a
hard link, a rotation during the pass, overlapping sources) becomes a ``skipped`` record
naming the first copy instead of a second copy."""

from __future__ import annotations

import os
import stat
from typing import Any, ClassVar

from . import _logs_macos, _logs_windows
from ._common import MACOS, WINDOWS
from .base import Collector, Stage
from .context import CollectContext, Options
from .logprofile import LogSource, Profile, load_profile
from .pathmap import describe, stored_relpath
from .stat_record import stat_fields
from .walk import walk_entries

NAME = "logs"


def stored_path(source: bytes) -> str:
    return f"artifacts/logs/{stored_relpath(source)}"


class LogsCollector(Collector):
    name: ClassVar[str] = NAME
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 10
    description: ClassVar[str] = "log files named by the profile (default: standard)"

    def __init__(self) -> None:
        self.profile: Profile = load_profile(None)

    def configure(self, options: Options) -> None:
        """Take the run's profile and, when asked, the ``--path`` trees as log sources."""
        profile = options.log_profile or load_profile(None)
        self.profile = profile.with_paths(list(options.log_paths))

    def sources(self) -> list[bytes]:
        return [s.root for s in self.profile.sources if os.path.lexists(s.root)]

    def watch_sources(self) -> list[LogSource]:
        return [s for s in self.profile.sources if os.path.lexists(s.root)]

    def collect(self, ctx: CollectContext) -> None:
        if WINDOWS:
            _logs_windows.collect(ctx, self.profile)
            return
        if MACOS:
            _logs_macos.collect(ctx, self.profile)
        seen: dict[tuple[int, int], dict[str, Any]] = {}
        for source in self.sources_present(ctx):
            for path, parent_id in self._files(ctx, source):
                self._take(ctx, path, seen, parent_id)
                if ctx.engine.stopped.is_set():  # a full drive: the rest is journaled as skipped
                    return
        ctx.engine.drain()

    def sources_present(self, ctx: CollectContext) -> list[LogSource]:
        present = []
        for source in self.profile.sources:
            if os.path.lexists(source.root):
                present.append(source)
            else:
                ctx.log.info("log_source_absent", root=os.fsdecode(source.root))
        return present

    def _files(self, ctx: CollectContext, source: LogSource) -> Any:
        def on_error(path: bytes, error: OSError) -> None:
            ctx.error(NAME, f"cannot list directory: {error.strerror}", path)

        try:
            st = os.lstat(source.root)
        except OSError as e:
            ctx.error(NAME, f"cannot stat: {e.strerror}", source.root)
            return
        if not stat.S_ISDIR(st.st_mode):
            yield source.root, None
            return
        # With the listing directory's identity, so the copy refuses a file whose directory
        # was swapped for a symlink (to /etc, say) between the walk and the copy.
        for path, parent_id in walk_entries(source.root, on_error, max_depth=source.max_depth):
            if source.selects(path):
                yield path, parent_id

    def _take(
        self,
        ctx: CollectContext,
        path: bytes,
        seen: dict[tuple[int, int], dict[str, Any]],
        parent_id: tuple[int, int] | None = None,
    ) -> None:
        rel = stored_path(path)
        try:
            st = os.lstat(path)
        except OSError:
            st = None  # the engine records why
        if st is not None and stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            first = seen.get(key)
            if first is not None:
                ctx.engine.record_skip(
                    NAME,
                    path,
                    f"duplicate: same file (device, inode) as {first['path']}, stored once",
                    duplicate_of=first,
                    stat=stat_fields(st),
                )
                return
            seen[key] = {**describe(path), "stored_path": rel}
        ctx.engine.submit(path, rel, NAME, parent_id=parent_id, kind="log")
