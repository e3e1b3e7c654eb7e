"""Reading an evidence directory for reporting: the verdict, the journal and the artifacts.

A report is often made from evidence that failed verification (that is when one is most
needed), so nothing here trusts the directory. The journal is read once, through the one
parser, after verification (``VerificationResult.iter_records``), and only what the
report shows is kept (``JournalView``, ``ArtifactIndex``): memory does not grow with the
number of files. Stored files are opened below the evidence directory one name at a time
and never through a symlink (``treewalk.open_beneath``, so a path 5,000 levels deep opens
too), only when regular, and read within bounds: text line by line, JSON within a size
and a depth (``bounded``). Whatever a bound leaves unread is noted (``not_examined``) and
the report lists it."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from manifests import layout, treewalk
from manifests.errors import ManifestError
from manifests.verify import VerificationResult, verify_evidence

from .artifactindex import CAPS, ArtifactIndex
from .bounded import MAX_DEPTH, JSONTooDeepError, clip_counted, loads
from .journalview import JournalView
from .values import source_name, to_ns, utc_text

__all__ = ["Evidence", "load", "lines", "source_name", "to_ns", "utc_text"]

MAX_JSON = 16 * 1024 * 1024  # bytes of one stored JSON file, parsed whole
JSON_BUDGET = 48 * 1024 * 1024  # what one parsed JSON file may keep (bounded.clip units)
MAX_JSONL_LINE = 1024 * 1024  # one line of a JSON-lines file
MAX_JSONL_BYTES = 256 * 1024 * 1024
ROW_BUDGET = 64 * 1024  # one row of a JSON-lines file
_FILE = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def open_stored(root: Path, rel: str) -> int:
    """A descriptor of the regular file ``rel`` below ``root``, opened one name at a time
    and never through a symlink (any depth), without blocking on a FIFO. Raises OSError
    (``EINVAL`` when it is not a regular file) or ValueError (``..`` in ``rel``)."""
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = treewalk.open_beneath(top, rel, _FILE)
    finally:
        os.close(top)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        raise OSError(errno.EINVAL, "not a regular file", rel)
    except BaseException:
        os.close(fd)
        raise


def lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(number, line, whole)`` for each line of ``stream``, without its newline, holding
    at most ``max_line`` bytes: a longer line gives its first ``max_line`` bytes with
    ``whole`` False, and the rest of it is skipped."""
    number = 0
    while raw := stream.readline(max_line + 1):
        number += 1
        if raw.endswith(b"\n"):
            yield number, raw[:-1], True
        elif len(raw) <= max_line:
            yield number, raw, True  # the last line, without a newline
        else:
            yield number, raw[:max_line], False
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(1024 * 1024)


def count_lines(stream: IO[bytes]) -> int:
    """Lines left in ``stream`` (a last line without a newline counts), read in chunks."""
    count, last = 0, b"\n"
    while chunk := stream.read(1024 * 1024):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (last != b"\n")


@dataclass
class Evidence:
    root: Path
    verification: VerificationResult
    journal: JournalView = field(default_factory=JournalView)
    index: ArtifactIndex = field(default_factory=ArtifactIndex)
    journal_problem: str | None = None
    # What a bound left unread: {"artifact", "seq", "what", "why"}, in the report.
    limits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def start(self) -> dict[str, Any]:
        return self.journal.start

    @property
    def end(self) -> dict[str, Any] | None:
        return self.journal.end

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return self.journal.of_type(kind)

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        """The artifacts the report opens or cites by path (``ArtifactIndex``)."""
        return self.index.notable

    def artifact_for_source(self, suffix: str) -> list[dict[str, Any]]:
        """Login-record artifacts whose source path ends with ``suffix`` (``/wtmp``)."""
        return [
            a
            for a in self.index.of_kind("login")
            if str((a.get("source") or {}).get("path", "")).endswith(suffix)
        ]

    def not_examined(self, rel: str | None, what: str, why: str) -> None:
        seq = (self.artifacts.get(rel) or {}).get("seq") if rel else None
        self.limits.append({"artifact": rel, "seq": seq, "what": what, "why": why})

    @contextmanager
    def stored(self, rel: str) -> Iterator[IO[bytes] | None]:
        """A stored file, open for reading; None when it is absent, unsafe or not regular."""
        fd = self._open(rel)
        if fd is None:
            yield None
            return
        with os.fdopen(fd, "rb", buffering=1024 * 1024) as stream:
            yield stream

    def _open(self, rel: str) -> int | None:
        try:
            return open_stored(self.root, rel) if layout.is_safe_relpath(rel) else None
        except (OSError, ValueError):
            return None

    def read_bytes(self, rel: str, limit: int = MAX_JSON) -> bytes | None:
        """At most ``limit`` bytes of a stored file, or None (see ``stored``)."""
        with self.stored(rel) as stream:
            return None if stream is None else stream.read(limit)

    def read_tail(self, rel: str, size: int) -> bytes:
        """The last ``size`` bytes of a stored file (empty when it cannot be read)."""
        with self.stored(rel) as stream:
            if stream is None:
                return b""
            end = os.fstat(stream.fileno()).st_size
            stream.seek(max(0, end - size))
            return stream.read(size)

    def read_json(self, rel: str) -> Any:
        """A stored JSON file, parsed within ``MAX_JSON`` bytes, ``MAX_DEPTH`` levels and
        ``JSON_BUDGET``; None when it is absent, too large, too deep or not JSON."""
        data = self.read_bytes(rel, MAX_JSON + 1)
        if data is None:
            return None
        if len(data) > MAX_JSON:
            self.not_examined(
                rel, "the whole file was not read", f"it is larger than {MAX_JSON // 2**20} MiB"
            )
            return None
        try:
            value = loads(data)
        except JSONTooDeepError:
            self.not_examined(
                rel, "the whole file was not read", "its JSON is nested too deeply to parse"
            )
            return None
        except (ValueError, UnicodeDecodeError):
            return None
        value, _, cut = clip_counted(value, JSON_BUDGET)
        if cut:
            self.not_examined(rel, "part of the file was cut", _CUT)
        return value

    def read_jsonl(self, rel: str, keys: tuple[str, ...] = ()) -> list[Any] | None:
        """The rows of a stored JSON-lines file (with ``keys``, only those keys of each
        object), within ``MAX_JSONL_LINE`` a line, ``ROW_BUDGET`` a row and
        ``JSON_BUDGET`` and ``MAX_JSONL_BYTES`` in all; a line that is not JSON is
        skipped. None when the file is absent."""
        with self.stored(rel) as stream:
            if stream is None:
                return None
            rows: list[Any] = []
            left, cut = JSON_BUDGET, 0
            long: list[int] = []
            deep: list[int] = []
            for number, line, whole in lines(stream, MAX_JSONL_LINE):
                if left <= 0 or stream.tell() > MAX_JSONL_BYTES:
                    last = number + count_lines(stream)
                    self.not_examined(
                        rel,
                        f"lines {number} to {last} ({last - number + 1} lines) were not read",
                        f"the report reads at most {MAX_JSONL_BYTES // 2**20} MiB, and about "
                        f"{JSON_BUDGET // 2**20} MiB of rows, of one JSON-lines file",
                    )
                    break
                if not whole:
                    long.append(number)
                    continue
                try:
                    row = loads(line)
                except JSONTooDeepError:
                    deep.append(number)
                    continue
                except (ValueError, UnicodeDecodeError):
                    continue
                if keys and isinstance(row, dict):
                    row = {k: row[k] for k in keys if k in row}
                row, used, clipped = clip_counted(row, ROW_BUDGET)
                rows.append(row)
                left -= used
                cut += clipped
        if long:
            self.not_examined(
                rel, _numbers(long) + " not read", f"longer than {MAX_JSONL_LINE // 2**20} MiB"
            )
        if deep:
            self.not_examined(rel, _numbers(deep) + " not read", "nested too deeply to parse")
        if cut:
            self.not_examined(rel, f"parts of {cut} line(s) were cut", _CUT)
        return rows


_CUT = (
    f"values nested deeper than {MAX_DEPTH} levels, or beyond the report's size bound for "
    "one value, are left out"
)


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return f"line(s) {shown}" + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def load(
    evidence_dir: Path,
    workers: int | None = None,
    since: Callable[[dict[str, Any]], int | None] | None = None,
    chain_head: str | None = None,
) -> Evidence:
    """Verify, then read the records verification read (the same parser, the same chain:
    nothing after a break in the chain is reported as fact), once, keeping what the
    report shows. ``since(start record)`` is the recent-files threshold. Raises
    ``NotEvidenceError`` for a directory that holds none of the evidence files.
    ``chain_head``: the head from the custody form, which the last seal's must be."""
    verification = verify_evidence(evidence_dir, workers=workers, chain_head=chain_head)
    evidence = Evidence(evidence_dir, verification)
    evidence.index.since = since(verification.start) if since else None
    try:
        for record in verification.iter_records():
            evidence.journal.feed(record)
            evidence.index.feed(record)
    except (OSError, ManifestError) as e:
        evidence.journal_problem = f"the journal could not be read again after verification: {e}"
    for kind, what in (("volatile", "volatile"), ("login", "login record"), ("auth", "auth log")):
        if evidence.index.left_out[kind]:
            evidence.not_examined(
                None,
                f"{evidence.index.left_out[kind]} more {what} artifact(s) were not read",
                f"the report reads at most {CAPS[kind]} of them",
            )
    return evidence
