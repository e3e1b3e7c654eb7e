"""After the link to the evidence server was lost: if the server comes back within the
reconnect window, seal what it holds, in a continuation of the journal.

The journal on the server cannot be appended to again (it was created read-only, and
only the lost connection held it open), so the seal goes into ``custody.continued.jsonl``
(``manifests.continuation``), created exclusively. Before signing, the server's journal
is read back and checked against what this run sent: the record the old connection last
acknowledged must be there with the same hash, and anything after it must be a prefix
of the bytes sent but never acknowledged. Only then is it sealed, after an ``fsync`` of
the journal through a read-only handle, so the seal vouches for bytes on the server's
stable storage."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from manifests.continuation import CONTINUATION, continuation_lines
from manifests.journal_reader import ChainState, read_chain
from manifests.signing import Signer

from ._loop import SinkLostError, link_errors
from ._ssh import theirs
from .sftp import SftpSink
from .target import SinkRefusedError

RETRY_EVERY = 1.0  # seconds between connection attempts in the window


class _Refused(Exception):
    """The server came back but what it holds cannot be sealed (said why)."""


def _retryable() -> tuple[type[BaseException], ...]:
    """A reconnect that failed and may be tried again, from either transport."""
    return (OSError, *theirs("Error"), *link_errors())


def reseal(
    sink: SftpSink,
    reopen: Callable[[float], SftpSink],
    signer: Signer,
    window: float,
    stopped: Callable[[], str | None] = lambda: None,
) -> SinkLostError:
    """Try to reconnect for ``window`` seconds, or until a stop signal (``stopped``
    names it); the error to end the run with, which says what, if anything, was sealed
    (and its chain head)."""
    lost = sink.lost
    assert lost is not None
    if sink.closing.failed is not None:  # a seal could vouch for a file not on its disk
        why = (
            f"an fsync or close had failed before ({sink.closing.failed}): nothing more was sealed"
        )
        return SinkLostError(lost.location, f"{lost.reason}; {why}")
    sent = sink.journal.unacknowledged() if sink.journal is not None else b""
    deadline = time.monotonic() + window
    why = f"it did not come back within {window:g} s: nothing more was sealed"
    while window > 0:
        left = deadline - time.monotonic()
        if stopped() is not None:
            why = f"{stopped()} received while reconnecting: nothing more was sealed"
            break
        if left <= 0:
            break
        try:
            again = reopen(left)
        except SinkRefusedError as e:
            why = f"it came back but was refused ({e}): nothing more was sealed"
            break
        except _retryable():
            pause = time.monotonic() + min(RETRY_EVERY, max(deadline - time.monotonic(), 0))
            while time.monotonic() < pause and stopped() is None:
                time.sleep(0.1)
            continue
        try:
            unconfirmed = sink.unconfirmed()
            seq, head = _seal_on(again, sink.acked, sent, signer, lost.reason, unconfirmed)
        except _Refused as e:
            why = f"it came back, but {e}: nothing more was sealed"
            break
        except (OSError, SinkLostError) as e:
            why = f"it came back, but sealing there failed ({e}): nothing more was sealed"
            break
        finally:
            again.close()
        why = (
            f"it came back: what the server holds is sealed in {CONTINUATION}, up to seq "
            f"{seq}, chain head {head}"
        )
        resealed = SinkLostError(lost.location, f"{lost.reason}; {why}")
        resealed.hint = (
            "run 'verify' on the directory on the server: it holds up to that seal; "
            "write its chain head on the custody form"
        )
        return resealed
    return SinkLostError(lost.location, f"{lost.reason}; {why}")


def _seal_on(
    sink: SftpSink,
    acked: tuple[int, str] | None,
    sent: bytes,
    signer: Signer,
    reason: str,
    unconfirmed: list[str],
) -> tuple[int, str]:
    """Read the server's journal back, check it is what was sent, seal it. First the
    files whose fsync the lost link never confirmed, closed or still open (an image part
    whose pieces are journaled as they are written), are fsynced again: a record in the
    journal may name them; one the server never created is in no record."""
    for rel in unconfirmed:
        with contextlib.suppress(FileNotFoundError):
            sink.fsync_stored(rel)
    journal = sink.journal_name
    sink.fsync_stored(journal)
    records, head, size = _held(sink.open_read(journal), acked, sent)
    fields: dict[str, Any] = {"lost": reason[:1000]}
    if acked is not None:
        fields["acknowledged_seq"] = acked[0]
    data, chain_head = continuation_lines(records, head, size, signer, **fields)
    file = sink.create(CONTINUATION, append=True)
    file.write(data)
    file.close()  # fsynced first
    return records + 1, chain_head


def _held(fd: int, acked: tuple[int, str] | None, sent: bytes) -> tuple[int, str, int]:
    """(records, chain head, bytes) of the whole lines of the journal read back."""
    state = ChainState()
    acked_end = 0 if acked is None else None
    with os.fdopen(fd, "rb") as stream:
        for record in read_chain(stream, state):
            if acked is not None and record["seq"] == acked[0]:
                if state.head != acked[1]:
                    raise _Refused(f"its journal differs at seq {acked[0]} from what was sent")
                acked_end = state.bytes_read
        if state.problem and not state.problem.startswith("torn last line"):
            raise _Refused(f"its journal does not read back whole ({state.problem})")
        if acked_end is None:
            raise _Refused(f"its journal ends before seq {acked[0] if acked else 0}")
        stream.seek(acked_end)
        tail = stream.read(state.bytes_read - acked_end)
    if not sent.startswith(tail):
        raise _Refused("its journal holds records this run did not send")
    if not state.records:
        raise _Refused("its journal holds no whole record")
    return state.records, state.head, state.bytes_read
