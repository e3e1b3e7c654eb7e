"""``pacct``: BSD process accounting, where the host keeps it (``/var/log/account/pacct``
on Debian, ``/var/account/pacct`` on Red Hat, ``/var/log/pacct``, ``/var/adm/pacct``,
with their rotated generations). Every file is copied raw under
``artifacts/pacct/<original path>``; each uncompressed one is also decoded
(collectors/pacctfile.py): its newest ``RECENT`` records (profile ``full``, ``pacct_all``:
every record), each a ``process-record`` fact (rule ``pacct-intrusion-tool``). They go
to ``artifacts/pacct/<original path>.jsonl``, one process a line with its user's name:
all of them with ``pacct_all``; else the newest ``ROWS`` and every older one a rule
fired on, the number of the others in a ``skipped`` record. The raw copy is the
evidence; the rows are its reading for an examiner, and 50,000 JSON rows would cost a
busy server more than the rest of the triage collectors together."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .factfilter import FactFilter
from .findings import apply_rules, rules_of, summarize, window_start
from .homes import read_passwd
from .pacctfile import SIZE, fact_fields, row, unpacked
from .pathmap import stored_relpath
from .smalltrees import host_path
from .textview import plural
from .triagegate import triage_settings

PREFIX = "artifacts/pacct"
DIRS = (b"var/log/account", b"var/account", b"var/log", b"var/adm")
RECENT = 50_000  # records (3.2 MB) decoded and judged in the standard profile: the newest
ROWS = 5_000  # of those, written as rows (the newest; and every one a rule fired on)
ALL_MAX = 2 * 1024**3  # even pacct_all decodes at most this much of one file


def pacct_files(root: bytes) -> list[bytes]:
    """The accounting files and their generations (``pacct``, ``pacct.0``, ``pacct.1.gz``)."""
    found: list[bytes] = []
    for rel in DIRS:
        top = os.path.join(root, rel)
        try:
            names = sorted(n for n in os.listdir(top) if n == b"pacct" or n.startswith(b"pacct."))
        except OSError:
            continue
        found += [os.path.join(top, n) for n in names]
    return found


def read_tail(path: bytes, limit: int) -> tuple[bytes, int]:
    """(the last ``limit`` bytes of whole records, their offset in the file) of a regular
    file opened without following a symlink or opening a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        whole = st.st_size - st.st_size % SIZE
        start = max(0, whole - limit)
        return os.pread(fd, whole - start, start), start
    finally:
        os.close(fd)


class PacctCollector(Collector):
    name: ClassVar[str] = "pacct"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 43
    description: ClassVar[str] = "process accounting (pacct): copied, newest records decoded"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        settings = triage_settings(ctx, self.name, "Process accounting")
        if settings is None:
            return
        files = pacct_files(self.root)
        if not files:
            ctx.summary.add("Process accounting", "none kept (no pacct file)")
            return
        window = window_start(ctx, settings.detection_window_days)
        names: dict[int, str] = {}
        for a in read_passwd(self.root):
            names.setdefault(a.uid, a.name)
        limit = ALL_MAX if settings.pacct_all else RECENT * SIZE
        rows = None if settings.pacct_all else ROWS
        decoded = 0
        for path in files:
            host = host_path(self.root, path)
            ctx.engine.preserve(path, f"{PREFIX}/{stored_relpath(os.fsencode(host))}",
                                self.name, kind="pacct")  # fmt: skip
            if not path.endswith(b".gz"):
                decoded += self._decode(ctx, path, host, (limit, rows), names, window)
        ctx.engine.drain()
        ctx.summary.add(
            "Process accounting", f"{plural(len(files), 'file')}, {decoded:,} records decoded"
        )
        summarize(ctx, self.name, rules_of(ctx).ids("process-record"))

    def _decode(
        self, ctx: CollectContext, path: bytes, host: str, limits: tuple[int, int | None],
        names: dict[int, str], window: int,
    ) -> int:  # fmt: skip
        """Decode and judge the newest records of one file; write its rows in one pass
        (``limits``: bytes decoded, rows written, None for all). Returns the records."""
        try:
            data, start = read_tail(path, limits[0])
        except OSError as e:
            ctx.error(self.name, f"cannot read: {e.strerror}", path)
            return 0
        if start:
            ctx.engine.record_skip(
                self.name, path, f"only the newest {len(data) // SIZE:,} records decoded "
                "(pacct_all decodes all; the raw copy has every one)", first_offset=start,
            )  # fmt: skip
        rel = f"{PREFIX}/{stored_relpath(os.fsencode(host))}.jsonl"
        rows_from = 0 if limits[1] is None else max(0, len(data) // SIZE - limits[1]) * SIZE
        judge = FactFilter(rules_of(ctx), "process-record")
        fields = fact_fields(host, names, window)
        read = [fields.get(f, lambda v: None) for f in judge.fields]  # what the rules read

        def fact(v: tuple[Any, ...]) -> dict[str, Any]:
            return {name: get(v) for name, get in fields.items()}

        count = bad = 0
        lines: list[str] = []
        for offset, v in unpacked(data):
            if v is None:
                bad += 1
                continue
            count += 1
            fired = judge.may_hold_keyed(tuple([get(v) for get in read]), fact, v) and (
                apply_rules(ctx, self.name, "process-record", fact(v), path, rel)
            )
            if offset >= rows_from or fired:
                lines.append(row(v, start + offset, names.get(v[4], "")))
        with ctx.engine.open_stream(rel, self.name, kind="pacct-decoded", parsed_from=host) as out:
            out.write("".join(lines).encode())
        if count > len(lines):
            ctx.engine.record_skip(
                self.name, path, f"{count - len(lines):,} older records decoded and judged, "
                f"not written as rows: {rel} has the newest {limits[1]:,} and every older one "
                "a rule fired on (pacct_all writes all); the raw copy has every one",
                records=count - len(lines),
            )  # fmt: skip
        if bad:
            ctx.engine.record_skip(self.name, path, "records that are not acct v3: not decoded",
                                   records=bad)  # fmt: skip
        return count
