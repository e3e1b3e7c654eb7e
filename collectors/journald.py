"""``journald``: every systemd journal file of the host, parsed into a readable export.

The journal files themselves are preserved byte for byte by the ``logs`` collector (the
profiles name ``/var/log/journal`` and ``/run/log/journal``); this collector reads the
same files with our own parser (collectors/journalfile.py, no ``journalctl``) and stores,
for each, ``artifacts/journald/<original path>.jsonl``: one JSON object a line, as
``journalctl --file FILE -o json --all`` prints it (checked against it in
tests/test_journald.py), so an examiner can grep it and the report reads logins, sudo and
SSH from it on a host without a text ``auth.log`` (Debian 12 without rsyslog).

One ``event: "journal-parsed"`` record per file gives its header (state, flags, counts)
and what the parser met: a file cut short, a torn tail, a field it could not decode, the
entries written after the last linked one. A file that is not a journal at all is an
error record; nothing stops the run. Bounded: at most ``MAX_EXPORT`` bytes of export per
run (the rest of the entries counted, not written)."""

from __future__ import annotations

import json
import os
import stat
import time
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext, Options
from .journalcodec import DecodeBudget
from .journalfile import JournalFile, JournalFormatError
from .logprofile import load_profile
from .pathmap import describe, stored_relpath
from .source import open_source
from .stat_record import stat_fields
from .textview import plural
from .walk import walk

ROOTS = (b"/var/log/journal", b"/run/log/journal")
SUFFIXES = (b".journal", b".journal~")
PREFIX = "artifacts/journald"
KIND = "journal-export"
MAX_EXPORT = 2 * 1024**3  # bytes of JSON lines in one run, all files together


def stored_export(source: bytes) -> str:
    return f"{PREFIX}/{stored_relpath(source)}.jsonl"


class JournaldCollector(Collector):
    name: ClassVar[str] = "journald"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 15  # right after the logs collector copied the same files
    description: ClassVar[str] = "systemd journal files parsed into JSON lines (no journalctl)"
    roots: tuple[bytes, ...] = ROOTS  # tests point it elsewhere

    paths: tuple[bytes, ...] = ()
    decoding: DecodeBudget | None = None
    since_us: int = 0  # entries before this (µs since the epoch) are not exported

    def configure(self, options: Options) -> None:
        """Journal files inside ``--path`` trees are parsed too (a mounted image's
        ``/var/log/journal``, or a copy an administrator made). Unless the profile says
        ``journald_all``, only the detection window's entries are exported: the window is
        what the report scopes, and a year of journal would cost minutes (docs/triage.md)."""
        self.paths = options.paths
        triage = (options.log_profile or load_profile(None)).triage
        if not triage.journald_all:
            now_ns = options.reference_time or time.time_ns()
            self.since_us = (now_ns - triage.detection_window_days * 86400 * 10**9) // 1000

    def sources(self) -> list[bytes]:
        return [r for r in self.roots if os.path.lexists(r)]

    def collect(self, ctx: CollectContext) -> None:
        files = sorted(self._files(ctx))
        if not files:
            ctx.summary.add("Journald", "no journal files")
            return
        started = time.monotonic()
        budget = MAX_EXPORT
        self.decoding = DecodeBudget()  # one for the run: many files may each hold bombs
        entries = problems = 0
        for path in files:
            if ctx.engine.stopped.is_set():
                return
            done = self._parse(ctx, path, budget)
            if done is None:
                continue
            n, written, troubled = done
            entries, budget, problems = entries + n, budget - written, problems + troubled
        ctx.summary.add(
            "Journald",
            f"{plural(len(files), 'file')}, {plural(entries, 'entry', 'entries')} exported, "
            f"{problems} with problems, "
            f"{time.monotonic() - started:.1f} s",
        )

    def _files(self, ctx: CollectContext) -> list[bytes]:
        def on_error(path: bytes, error: OSError) -> None:
            ctx.error(self.name, f"cannot list directory: {error.strerror}", path)

        found: list[bytes] = []
        for root in self.sources() + [p for p in self.paths if os.path.lexists(p)]:
            if not os.path.isdir(root):  # lstat-based below: a --path naming one file
                found += [root] if root.endswith(SUFFIXES) else []
                continue
            found += [p for p in walk(root, on_error) if p.endswith(SUFFIXES)]
        return list(dict.fromkeys(found))  # a --path inside /var/log/journal: once

    def _parse(self, ctx: CollectContext, path: bytes, budget: int) -> tuple[int, int, int] | None:
        """Export one file; (entries, bytes written, 1 if it had problems) or None."""
        try:
            fd = open_source(path)
        except OSError as e:
            ctx.error(self.name, f"cannot open: {e.strerror}", path)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                ctx.engine.record_skip(self.name, path, "not a regular file")
                return None
            try:
                jf = JournalFile.open(fd, self.decoding)
            except JournalFormatError as e:
                ctx.error(self.name, f"{e}: not parsed (the file itself is preserved)", path)
                return None
            except OSError as e:
                ctx.error(self.name, f"cannot read: {e.strerror}", path)
                return None
            if jf.header.tail_realtime and jf.header.tail_realtime < self.since_us:
                ctx.engine.record_skip(
                    self.name, path, "every entry is older than the detection window: not "
                    "parsed (the file itself is preserved; --profile full parses it)",
                    tail_realtime=jf.header.tail_realtime,
                )  # fmt: skip
                return None
            return self._export(ctx, path, st, jf, budget)
        finally:
            os.close(fd)

    def _export(
        self, ctx: CollectContext, path: bytes, st: os.stat_result, jf: JournalFile, budget: int
    ) -> tuple[int, int, int]:
        count = left = older = 0
        written = 0
        rel = stored_export(path)
        source = {**describe(path), "stat": stat_fields(st)}
        try:
            with ctx.engine.open_stream(rel, self.name, kind=KIND, source=source) as out:
                for entry in jf.entries():
                    if int(entry["__REALTIME_TIMESTAMP"]) < self.since_us:
                        older += 1
                        continue
                    line = json.dumps(entry, ensure_ascii=False).encode()
                    if written + len(line) + 1 > budget:
                        left += 1
                        continue
                    out.write(line + b"\n")
                    written += len(line) + 1
                    count += 1
        except OSError as e:
            jf.problem(f"reading stopped: {e.strerror}")
        if left:
            jf.problem(f"{left} entries not exported: the run's {MAX_EXPORT} byte export cap")
        fields: dict[str, Any] = {
            "header": jf.header.describe(),
            "entries": count,
            "problems": jf.problems,
            "unlinked_entries": jf.unlinked,
            "fields_not_decoded": jf.fields_not_decoded,
            "older_than_window": older,
            "since_us": self.since_us,
        }
        if left:
            fields["not_exported"] = left
        ctx.journal.append(
            "event", event="journal-parsed", collector=self.name, source=describe(path),
            export=rel, **fields,
        )  # fmt: skip
        return count, written, int(bool(jf.problems))
