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
from pathlib import Path
from typing import IO, Any

from . import canonical, clock
from .digest import sha256_bytes
from .errors import CanonicalError
from .journal import SEAL_FIELD, seal_message
from .journal_reader import MAX_LINE, open_journal
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


def _continued_from(stream: IO[bytes]) -> int | str:
    """``journal_bytes`` of the continuation's first record, or why it cannot be used."""
    line = stream.readline(MAX_LINE + 1)
    try:
        record = canonical.loads_strict(line.rstrip(b"\n"))
    except CanonicalError as e:
        return f"its first line is not a record ({e})"
    if not isinstance(record, dict) or record.get("type") != CONTINUED:
        return "its first line is not a 'continued' record"
    size = record.get("journal_bytes")
    if not isinstance(size, int) or size < 0:
        return "its first line is not a 'continued' record"
    return size


def open_chain(journal: str | os.PathLike[str], notes: list[str], problems: list[str]) -> IO[bytes]:
    """The journal at ``journal`` as one stream, its continuation (if any) joined on;
    what the examiner should know goes to ``notes`` and ``problems``."""
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
        problems.append(f"{CONTINUATION} is not a regular, singly linked file; it was not read")
        return first
    second = open_journal(path)
    size = _continued_from(second)
    if isinstance(size, str):
        second.close()
        problems.append(f"{CONTINUATION} was not read: {size}")
        return first
    second.seek(0)
    held = os.fstat(first.fileno()).st_size
    if held < size:
        problems.append(
            f"{CONTINUATION} continues the first {size} bytes of the journal, which holds "
            f"only {held}: it was cut short"
        )
    notes.append(
        f"the link to the evidence server was lost during the run; the journal continues "
        f"in {CONTINUATION} after its first {size} bytes, sealed once the server came back"
    )
    if held > size:
        notes.append(
            f"{held - size} byte(s) of the journal after those reached the server after the "
            "link was lost: they are not part of the chain and nothing vouches for them"
        )
    return io.BufferedReader(_Joined(first, size, second))
