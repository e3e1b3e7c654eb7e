"""The one parser of custody journals: every reader of ``custody.jsonl`` goes through here.

A journal is read a line at a time, each line bounded (a hostile journal may be one
endless line), parsed as strict canonical JSON and checked against the chain: ``seq``
counts from 0 and ``prev`` is the SHA-256 of the previous line. Reading stops at the first
line that breaks any of this, and says why; nothing after a break is believed."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from . import canonical
from .digest import ZERO_HASH, sha256_bytes
from .errors import CanonicalError, JournalChangedError

MAX_LINE = 8 * 1024 * 1024
# What a lab should do about a chain break, said once for every kind of break.
BROKEN = (
    "; nothing from this line on is believed (the journal was altered or damaged here): "
    "compare with another copy of the evidence"
)


@dataclass
class ChainState:
    """Where reading got to: the last good record and why reading stopped, if it did."""

    records: int = 0
    head: str = ZERO_HASH
    bytes_read: int = 0
    problem: str | None = None


def _loads_own(line: bytes) -> Any:
    """Parse a line this process wrote itself: the chain's head, checked once reading is
    done, proves every byte is what was written (so canonical form holds), and that
    check costs a quarter of the strict parse's time."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as e:
        raise CanonicalError(f"not valid JSON: {e}") from e


def read_chain(
    stream: IO[bytes], state: ChainState, strict: bool = True
) -> Iterator[dict[str, Any]]:
    """Yield each record that parses and chains; ``state`` says where and why it stopped.

    ``strict=False`` is only for a writer reading back its own journal against the head
    it wrote (``records_of`` with ``head``)."""
    parse = canonical.loads_strict if strict else _loads_own
    for seq in itertools.count():
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE:
                state.problem = (
                    f"chain broken at seq {seq}: the line is longer than {MAX_LINE} bytes{BROKEN}"
                )
            else:
                state.problem = (
                    f"torn last line after seq {seq - 1}: the writer stopped mid-record "
                    "(crash or truncation); it is not trusted, and the records before it "
                    "stand as far as a seal covers them"
                )
            return
        line = raw[:-1]
        try:
            record = parse(line)
        except CanonicalError as e:
            state.problem = f"chain broken at seq {seq}: {e}{BROKEN}"
            return
        if not isinstance(record, dict) or record.get("seq") != seq:
            state.problem = f"chain broken at seq {seq}: record out of sequence{BROKEN}"
            return
        if record.get("prev") != state.head:
            state.problem = (
                f"chain broken at seq {seq}: 'prev' does not match the previous line "
                f"(a line was changed, removed or reordered){BROKEN}"
            )
            return
        state.head = sha256_bytes(line)
        state.records = seq + 1
        state.bytes_read += len(raw)
        yield record


def open_journal(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a journal for reading without following a symlink or blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def iter_records(
    path: str | os.PathLike[str],
    through: int | None = None,
    head: str | None = None,
    verified: bool = False,
) -> Iterator[dict[str, Any]]:
    """Records of the journal at ``path``, in order, up to seq ``through``.

    With ``head``, the chain must reach exactly that hash at ``through``: a journal that
    changed since it was verified raises ``JournalChangedError`` instead of being read as
    if it were the verified one. ``verified`` (with ``head``): the journal was read
    strictly up to that head already, so it is read again without the canonical check,
    as the writer reads its own: a changed line breaks the next line's ``prev`` at once,
    and the last line the head check (``records_of``)."""
    with open_journal(path) as stream:
        yield from records_of(stream, os.fspath(path), through, head, own=verified)


def records_of(
    stream: IO[bytes],
    name: str,
    through: int | None = None,
    head: str | None = None,
    own: bool = False,
) -> Iterator[dict[str, Any]]:
    """``iter_records`` on an open journal; ``name`` is for the message. ``own``: the
    writer reads back the journal it wrote, through its sink, to the ``head`` it wrote
    (or a reader reads again what it verified, to the head it verified)."""
    state = ChainState()
    for record in read_chain(stream, state, strict=not (own and head is not None)):
        yield record
        if through is not None and record["seq"] >= through:
            break
    if head is not None and state.head != head:
        raise JournalChangedError(
            f"{name} changed since it was verified (the chain no longer "
            f"reaches {head[:16]}...); verify it again"
        )
