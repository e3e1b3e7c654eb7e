"""``pacct``: BSD process accounting, where the host keeps it (``/var/log/account/pacct``
on Debian, ``/var/account/pacct`` on Red Hat, ``/var/log/pacct``, ``/var/adm/pacct``,
with their rotated generations). Every file is copied raw under
``artifacts/pacct/<original path>``; each uncompressed one is also decoded
(collectors/pacctfile.py) into ``artifacts/pacct/<original path>.jsonl``, one process a
line with its user's name: its newest ``RECENT`` records (profile ``full``,
``pacct_all``: every record). Each decoded record is a ``process-record`` fact
(rule ``pacct-intrusion-tool``)."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .findings import apply_rules, rules_of, summarize, window_start
from .homes import read_passwd
from .pacctfile import SIZE, records
from .pathmap import stored_relpath
from .smalltrees import host_path, write_row
from .textview import plural
from .triagegate import triage_settings

PREFIX = "artifacts/pacct"
DIRS = (b"var/log/account", b"var/account", b"var/log", b"var/adm")
RECENT = 50_000  # records (3.2 MB) decoded in the standard profile: the newest
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
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
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
        decoded = 0
        for path in files:
            host = host_path(self.root, path)
            ctx.engine.preserve(path, f"{PREFIX}/{stored_relpath(os.fsencode(host))}",
                                self.name, kind="pacct")  # fmt: skip
            if not path.endswith(b".gz"):
                decoded += self._decode(ctx, path, host, limit, names, window)
        ctx.engine.drain()
        ctx.summary.add(
            "Process accounting", f"{plural(len(files), 'file')}, {decoded:,} records decoded"
        )
        summarize(ctx, self.name, rules_of(ctx).ids("process-record"))

    def _decode(
        self, ctx: CollectContext, path: bytes, host: str, limit: int, names: dict[int, str],
        window: int,
    ) -> int:  # fmt: skip
        try:
            data, start = read_tail(path, limit)
        except OSError as e:
            ctx.error(self.name, f"cannot read: {e.strerror}", path)
            return 0
        if start:
            ctx.engine.record_skip(
                self.name, path, f"only the newest {len(data) // SIZE:,} records decoded "
                "(pacct_all decodes all; the raw copy has every one)", first_offset=start,
            )  # fmt: skip
        rel = f"{PREFIX}/{stored_relpath(os.fsencode(host))}.jsonl"
        count = bad = 0
        with ctx.engine.open_stream(rel, self.name, kind="pacct-decoded", parsed_from=host) as out:
            for offset, rec in records(data):
                if rec is None:
                    bad += 1
                    continue
                count += 1
                row: dict[str, Any] = {"offset": start + offset, **rec,
                                       "user": names.get(rec["uid"], "")}  # fmt: skip
                write_row(out, row)
                fact = {"path": host, "command": rec["command"], "user": row["user"],
                        "uid": rec["uid"], "pid": rec["pid"], "ppid": rec["ppid"],
                        "exitcode": rec["exitcode"], "flags": rec["flags"],
                        "changed_ns": rec["started"] * 10**9}  # fmt: skip
                apply_rules(ctx, self.name, "process-record", fact, path, rel, window)
        if bad:
            ctx.engine.record_skip(self.name, path, "records that are not acct v3: not decoded",
                                   records=bad)  # fmt: skip
        return count
