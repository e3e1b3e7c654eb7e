"""``locate``: the locate databases (plocate's, mlocate's, findutils'), copied raw under
``artifacts/locate/<original path>``: the names of the files that existed when
``updatedb`` last ran, including those deleted since.

plocate and mlocate databases are also read (collectors/locatedb.py): how many names,
and each name in a world-writable directory (``/tmp``, ``/var/tmp``, ``/dev/shm``) that no
longer exists is a ``locate-name`` fact (rule ``locate-staged-file-gone``), listed in
``artifacts/locate/<database>.gone-staged.txt``. With ``locate_names`` (profile ``full``) every name
goes to ``artifacts/locate/<database>.names.txt`` and every name that no longer exists to
``<database>.gone.txt``: the database as text, and what disappeared since updatedb."""

from __future__ import annotations

import mmap
import os
import re
import stat
from contextlib import ExitStack
from typing import ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .findings import apply_rules, rules_of, summarize
from .locatedb import Buffer, LocateFormatError, blocks, format_of
from .pathmap import stored_relpath
from .persistkinds import WRITABLE_PREFIXES
from .smalltrees import host_path
from .textview import plural
from .triagegate import triage_settings

PREFIX = "artifacts/locate"
DATABASES = (
    b"var/lib/plocate/plocate.db", b"var/lib/mlocate/mlocate.db", b"var/cache/locate/locatedb",
    b"var/lib/locate/locatedb", b"var/db/locate.database", b"var/lib/slocate/slocate.db",
)  # fmt: skip
PARSE_MAX = 1024**3  # a database read for its names (mapped, not loaded)
MAX_GONE_FACTS = 10_000
_STAGED = tuple(p.encode() for p in WRITABLE_PREFIXES)
# A name in a world-writable directory anywhere in a block but first (a literal start:
# searched at C speed; without the NUL the search is ten times slower)
_STAGED_IN = re.compile(b"\0(?:" + b"|".join(re.escape(p) for p in _STAGED) + b")")


class LocateCollector(Collector):
    name: ClassVar[str] = "locate"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 45
    description: ClassVar[str] = "locate databases (plocate, mlocate): copied, names read"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        settings = triage_settings(ctx, self.name, "Locate databases")
        if settings is None:
            return
        found = [p for p in (os.path.join(self.root, r) for r in DATABASES) if os.path.lexists(p)]
        if not found:
            ctx.summary.add("Locate databases", "none (updatedb has not run, or no locate)")
            return
        total = gone = 0
        for path in found:
            host = host_path(self.root, path)
            ctx.engine.preserve(path, f"{PREFIX}/{stored_relpath(os.fsencode(host))}",
                                self.name, kind="locate-db")  # fmt: skip
            got = self._read(ctx, path, host, settings.locate_names)
            total += got[0]
            gone += got[1]
        ctx.engine.drain()
        ctx.summary.add(
            "Locate databases",
            f"{plural(len(found), 'database')}, {total:,} names, {gone} staged files gone since",
        )
        summarize(ctx, self.name, rules_of(ctx).ids("locate-db", "locate-name"))

    def _read(self, ctx: CollectContext, path: bytes, host: str, listing: bool) -> tuple[int, int]:
        try:
            fd = os.open(
                path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            )
        except OSError as e:
            ctx.error(self.name, f"cannot open: {e.strerror}", path)
            return 0, 0
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                return 0, 0
            kind = format_of(os.pread(fd, 8, 0))
            if kind is None:  # findutils' LOCATE02 and slocate: copied, not read
                ctx.engine.record_skip(self.name, path, "not a plocate or mlocate database: "
                                       "copied, its names not read")  # fmt: skip
                return 0, 0
            if st.st_size > PARSE_MAX:
                ctx.engine.record_skip(self.name, path, f"larger than {PARSE_MAX} bytes: "
                                       "copied, its names not read", size=st.st_size)  # fmt: skip
                return 0, 0
            with mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ) as data:
                return self._names(ctx, path, host, kind, data, st, listing)
        except (OSError, LocateFormatError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            ctx.error(self.name, f"cannot read its names: {why}", path)
            return 0, 0
        finally:
            os.close(fd)

    def _names(
        self, ctx: CollectContext, path: bytes, host: str, kind: str, data: Buffer,
        st: os.stat_result, listing: bool,
    ) -> tuple[int, int]:  # fmt: skip
        base = f"{PREFIX}/{os.path.basename(host)}"
        count, gone = 0, []
        with ExitStack() as stack:
            names_out = gone_out = None
            if listing:
                names_out = stack.enter_context(
                    ctx.engine.open_stream(
                        f"{base}.names.txt", self.name, kind="locate-names", parsed_from=host
                    )
                )
                gone_out = stack.enter_context(
                    ctx.engine.open_stream(
                        f"{base}.gone.txt", self.name, kind="locate-gone", parsed_from=host
                    )
                )
            for block in blocks(data):
                if gone_out is None and not (
                    block.startswith(_STAGED) or _STAGED_IN.search(block)
                ):  # the standard profile: a block of names outside /tmp and the like, only
                    # counted (an empty name, which updatedb never writes, counts too)
                    count += block.count(b"\0") + 1 - block.endswith(b"\0")
                    continue
                for name in block.split(b"\0"):
                    if not name:
                        continue
                    count += 1
                    in_staging = name.startswith(_STAGED)
                    if names_out is not None:
                        names_out.write(name + b"\n")
                    if not (in_staging or gone_out is not None):
                        continue
                    if os.path.lexists(os.path.join(self.root, name.lstrip(b"/"))):
                        continue
                    if gone_out is not None:
                        gone_out.write(name + b"\n")
                    if in_staging:
                        gone.append(name)
        fact = {"path": host, "format": kind, "names": count, "size": st.st_size,
                "changed_ns": st.st_mtime_ns}  # fmt: skip
        apply_rules(ctx, self.name, "locate-db", fact, path, None)
        if gone:
            rel = f"{base}.gone-staged.txt"
            ctx.engine.store_bytes(rel, b"".join(n + b"\n" for n in gone), self.name,
                                   kind="locate-gone-staged", parsed_from=host)  # fmt: skip
            for name in gone[:MAX_GONE_FACTS]:
                fact = {"path": os.fsdecode(name), "database": host, "exists": False,
                        "writable_dir": True}  # fmt: skip
                apply_rules(ctx, self.name, "locate-name", fact, name, rel)
        return count, len(gone)
