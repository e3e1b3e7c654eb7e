"""A journal continued in a second file, after the first could no longer be appended to.

On an SFTP drop-box the journal is created read-only (0444) in the ``open`` itself, so
once the connection that held it open is lost, nobody (this tool included) can append to
it again: that is what stops the host from altering what it sent. When the server comes
back, the run seals what the server holds in ``custody.continued.jsonl``, created
exclusively beside it. Its first line, a ``continued`` record, names how many bytes of
``custody.jsonl`` it continues (``journal_bytes``) and chains to the last line among them
(``seq``, ``prev``); a signed seal follows. The chain is one chain: readers see the first
``journal_bytes`` of ``custody.jsonl`` followed by the continuation, as one stream
(``open_chain``), checked by the one parser like any journal."""

from __future__ import annotations

import base64
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import canonical, clock
from .digest import sha256_bytes
from .errors import CanonicalError
from .journal import SEAL_FIELD, seal_message
from .journal_reader import open_journal
from .signing import Signer

CONTINUATION = "custody.continued.jsonl"
CONTINUED = "continued"
REASON = "after the link was lost"


def continuation_lines(
    seq: int, prev: str, journal_bytes: int, signer: Signer, **fields: Any
) -> tuple[bytes, str]:
    """The continuation's content: a ``continued`` record at ``seq`` chained to ``prev``
    (the hash of the last whole line among the first ``journal_bytes`` of the journal),
    then a seal of it. Returns the bytes and the chain head (the seal's line hash)."""
    record = {
        "seq": seq,
        "prev": prev,
        **clock.reading(),
        "type": CONTINUED,
        "journal_bytes": journal_bytes,
        **fields,
    }
    first = canonical.dumps(record)
    seal: dict[str, Any] = {
        "seq": seq + 1,
        "prev": sha256_bytes(first),
        **clock.reading(),
        "type": "seal",
        "reason": REASON,
        "signer": signer.fingerprint,
    }
    seal[SEAL_FIELD] = base64.b64encode(signer.sign(seal_message(seal))).decode("ascii")
    second = canonical.dumps(seal)
    return first + b"\n" + second + b"\n", sha256_bytes(second)


class _Joined(io.RawIOBase):
    """The first ``limit`` bytes of one stream, then all of another: one journal."""

    def __init__(self, first: IO[bytes], limit: int, second: IO[bytes]) -> None:
        self._first, self._left, self._second = first, limit, second

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._left > 0:
            data = self._first.read(min(len(view), self._left))
            if data:
                self._left -= len(data)
                view[: len(data)] = data
                return len(data)
            self._left = 0  # shorter than the continuation says: the chain will break
        data = self._second.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._first.close()
        self._second.close()
        super().close()


# A genuine continuation is two short lines (its ``lost`` reason is cut to 1,000
# characters); anything bigger was not written by ``preserve``.
MAX_CONTINUATION = 64 * 1024


@dataclass
class Continued:
    """What ``open_chain`` found: the seq of the continuation's ``continued`` record, when
    one was joined on (any other ``continued`` record in the chain is tampering), and how
    many bytes of ``custody.jsonl`` it continues."""

    seq: int | None = None
    journal_bytes: int = 0


def _continued_from(stream: IO[bytes]) -> tuple[int, int] | str:
    """(``journal_bytes``, seq) of a continuation as the run writes it, or why not.

    The run writes it once (``agent/sinks/reseal.py``): a ``continued`` record and its
    seal. Anything else in their place (a transfer to another key and its seal, the two
    lines twice) would let someone without the collector's key choose where the
    collector's journal stops and what follows, so it is not read. After that seal, the
    chain goes on here as it would in ``custody.jsonl`` (whose bytes past
    ``journal_bytes`` are outside the chain): ``preserve custody`` and ``release`` append
    their records and seals, checked like any others."""
    data = stream.read(MAX_CONTINUATION + 1)
    if len(data) > MAX_CONTINUATION:
        return (
            f"it is larger than {MAX_CONTINUATION} bytes, and the run writes two short lines "
            "(each custody transfer a few more)"
        )
    lines = data.split(b"\n")
    if lines[-1]:
        return "its last line is torn (the continuation was cut or written over)"
    records: list[Any] = []
    for line in lines[:-1]:
        try:
            records.append(canonical.loads_strict(line))
        except CanonicalError as e:
            return f"a line of it is not a record ({e})"
    first = records[0] if records else None
    if not isinstance(first, dict) or first.get("type") != CONTINUED:
        return "its first line is not a 'continued' record"
    size, seq = first.get("journal_bytes"), first.get("seq")
    if not isinstance(size, int) or size < 0 or not isinstance(seq, int):
        return "its first line is not a 'continued' record"
    kinds = [r.get("type") if isinstance(r, dict) else None for r in records[1:]]
    if kinds[:1] != ["seal"] or CONTINUED in kinds:
        found = ", ".join(f"'{k}'" for k in kinds[:3]) or "nothing"
        return (
            f"after its 'continued' record it holds {found}, where the run writes one seal "
            "(and only custody records may follow it): it was added to or written by "
            "someone else"
        )
    return size, seq


def _count_lines(fd: int, start: int, end: int) -> tuple[int, bool]:
    """Lines in bytes ``start..end`` of ``fd`` (the first ``MAX_CONTINUATION * 1024``
    looked at; True if there was more)."""
    count, offset, stop = 0, start, min(end, start + MAX_CONTINUATION * 1024)
    while offset < stop:
        chunk = os.pread(fd, min(1024 * 1024, stop - offset), offset)
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count, stop < end


def open_chain(
    journal: str | os.PathLike[str],
    notes: list[str],
    problems: list[str],
    continued: Continued | None = None,
) -> IO[bytes]:
    """The journal at ``journal`` as one stream, its continuation (if any) joined on;
    what the examiner should know goes to ``notes`` and ``problems``, and where the
    continuation begins to ``continued``."""
    first = open_journal(journal)
    path = Path(journal).with_name(CONTINUATION)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return first
    except OSError as e:
        problems.append(f"{CONTINUATION} cannot be examined: {e.strerror}; it was not read")
        return first
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        problems.append(
            f"{CONTINUATION} is not a regular, singly linked file; it was not read "
            "(tampering: the run creates it as a plain file)"
        )
        return first
    second = open_journal(path)
    found = _continued_from(second)
    if isinstance(found, str):
        second.close()
        problems.append(
            f"{CONTINUATION} was not read: {found}; the journal is checked without it, "
            "so the chain stops where custody.jsonl does (tampering)"
        )
        return first
    size, seq = found
    if continued is not None:
        continued.seq, continued.journal_bytes = seq, size
    second.seek(0)
    held = os.fstat(first.fileno()).st_size
    if held < size:
        problems.append(
            f"{CONTINUATION} continues the first {size} bytes of the journal, which holds "
            f"only {held}: custody.jsonl was cut short after the continuation was sealed "
            "(tampering); get the directory again from the evidence server"
        )
    notes.append(
        f"the link to the evidence server was lost during the run; the journal continues "
        f"in {CONTINUATION} after its first {size} bytes, sealed once the server came back"
    )
    if held > size:
        lines, more = _count_lines(first.fileno(), size, held)
        notes.append(
            f"{held - size} byte(s) of custody.jsonl after those ({lines}{'+' if more else ''} "
            f"record(s)) are not part of the chain and nothing vouches for them: sent before "
            "the link was lost and written by the server after it was sealed, or added later; "
            "a file only they name is unexpected"
        )
    return io.BufferedReader(_Joined(first, size, second))
