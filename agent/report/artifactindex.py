"""The artifacts the report looks at, out of a journal of any size.

Most artifact records of a large collection are files of a ``--path`` tree, and the
report shows them only in aggregate: how many, how large, modified when, the newest few
hundred (the timeline) and how many are recent (a finding). Those are kept as counters
and a bounded heap. The few artifacts the report opens or cites by path are kept as
short summaries (``brief``): the volatile snapshots and preserved executables, login
records (``wtmp``, ``btmp``, ``utmp``), auth logs and text logs. Each kind is kept up to a
count and all of them within a budget of characters; what is not kept is counted, and the
report says so."""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .bounded import MAX_TEXT, mapping, text
from .values import source_name

VOLATILE = "artifacts/volatile/"
LOGIN_FILES = ("wtmp", "btmp", "utmp")
AUTH_NAMES = ("auth.log", "secure")
AUTH_SKIPPED = (".gz", ".xz", ".bz2", ".zst")
COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4")
# Kinds of notable artifacts, with how many of each are kept (a genuine collection has
# a few dozen volatile files and a few hundred logs).
CAPS = {"volatile": 5_000, "login": 200, "auth": 200, "logs": 1_000, "journal": 200}
BUDGET = 32 * 1024 * 1024  # characters of paths kept for notable artifacts, in all
NEWEST = 500  # the newest file modifications, for the timeline and the recent finding


class NewestFile(NamedTuple):
    ns: int
    order: int  # negated journal order: equal times keep the journal's order
    seq: int | None
    path: str
    name: str


@dataclass
class FileSummary:
    """The files whose source had a modification time: the timeline's file lane, summed."""

    count: int = 0
    bytes: int = 0
    oldest_ns: int | None = None
    newest_ns: int | None = None
    recent: int = 0  # modified at or after ``since``


def _kinds(path: str, name: str, collector: Any) -> list[str]:
    """What the report does with an artifact stored at ``path`` from host path ``name``."""
    kinds = []
    if path.startswith(VOLATILE):
        kinds.append("volatile")
    base = name.rsplit("/", 1)[-1]
    if any(name.endswith("/" + n) for n in LOGIN_FILES):
        kinds.append("login")
    if base.startswith(AUTH_NAMES) and not path.endswith(AUTH_SKIPPED):
        kinds.append("auth")
    is_log = collector == "logs" or "/log/" in name or name.endswith(".log")
    plain = not path.endswith(COMPRESSED) and base not in LOGIN_FILES
    if is_log and plain and "/journal/" not in name:
        kinds.append("logs")
    if collector == "journald" and path.endswith(".jsonl"):
        kinds.append("journal")  # parsed journal (collectors/journald.py)
    return kinds


def brief(record: dict[str, Any], path: str, name: str | None) -> dict[str, Any]:
    """The fields of an artifact record the report reads, as plain short values."""
    mtime = mapping(mapping(record.get("source")).get("stat")).get("mtime_ns")
    size, seq, exe = record.get("size"), record.get("seq"), record.get("exe")
    return {
        "path": path,
        "seq": seq if isinstance(seq, int) else None,
        "size": size if isinstance(size, int) else 0,
        "collector": text(record.get("collector"), 256),
        "exe": text(exe) if isinstance(exe, str) else None,
        "source": {
            "path": name,
            "stat": {"mtime_ns": mtime if isinstance(mtime, (str, int)) else None},
        },
    }


@dataclass
class ArtifactIndex:
    since: int | None = None  # the recent-files threshold, ns
    notable: dict[str, dict[str, Any]] = field(default_factory=dict)
    kinds: dict[str, dict[str, None]] = field(default_factory=dict)  # ordered sets of paths
    left_out: Counter[str] = field(default_factory=Counter)
    files: FileSummary = field(default_factory=FileSummary)
    _heap: list[NewestFile] = field(default_factory=list)
    _budget: int = BUDGET
    _order: int = 0

    def feed(self, r: dict[str, Any]) -> None:
        path = r.get("path")
        if r.get("type") != "artifact" or not isinstance(path, str):
            return
        self._order += 1
        src = r.get("source")
        raw_name = src.get("path") if isinstance(src, dict) else None
        name = raw_name if isinstance(raw_name, str) else None
        kinds = _kinds(path, name or "", r.get("collector"))
        if kinds:
            self._keep(r, path, name, kinds)
        mtime = mapping(mapping(src).get("stat")).get("mtime_ns")
        try:
            ns = int(mtime) if isinstance(mtime, (str, int)) else None
        except ValueError:
            ns = None
        if ns is not None:
            self._file(r, ns, path, name)

    def _keep(self, r: dict[str, Any], path: str, name: str | None, kinds: list[str]) -> None:
        cost = 256 + len(path) + len(name or "")
        if path not in self.notable and (self._budget < cost or len(path) > MAX_TEXT):
            for kind in kinds:
                self.left_out[kind] += 1
            return
        wanted = [k for k in kinds if path in self.kinds.get(k, ()) or self._room(k)]
        for kind in kinds:
            if kind not in wanted:
                self.left_out[kind] += 1
        if not wanted:
            return
        if path not in self.notable:
            self._budget -= cost
        self.notable[path] = brief(r, path, text(name) if name is not None else None)
        for kind in wanted:
            self.kinds.setdefault(kind, {})[path] = None

    def _room(self, kind: str) -> bool:
        return len(self.kinds.get(kind, ())) < CAPS[kind]

    def _file(self, r: dict[str, Any], ns: int, path: str, name: str | None) -> None:
        f = self.files
        f.count += 1
        size = r.get("size")
        f.bytes += size if isinstance(size, int) and size > 0 else 0
        f.oldest_ns = ns if f.oldest_ns is None else min(f.oldest_ns, ns)
        f.newest_ns = ns if f.newest_ns is None else max(f.newest_ns, ns)
        if self.since is not None and ns >= self.since:
            f.recent += 1
        key = (ns, -self._order)
        if len(self._heap) >= NEWEST and key <= self._heap[0][:2]:
            return
        seq = r.get("seq")
        exe = r.get("exe")
        shown = source_name({"path": path, "source": {"path": name}, "exe": exe})
        seq = seq if isinstance(seq, int) else None
        entry = NewestFile(ns, -self._order, seq, text(path), text(shown))
        if len(self._heap) >= NEWEST:
            heapq.heapreplace(self._heap, entry)
        else:
            heapq.heappush(self._heap, entry)

    def newest(self) -> list[NewestFile]:
        """The newest file modifications, newest first (ties in journal order)."""
        return sorted(self._heap, reverse=True)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [self.notable[p] for p in self.kinds.get(kind, {})]
