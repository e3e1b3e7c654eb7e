"""The ``packages`` digest loop in forked children, one a core (collectors/forked.py): the
~110,000 dpkg files cost ~5 s of per-file Python (open, fstat, result objects), nearly
all under the interpreter lock, where ``executables`` and ``persistence`` need it too;
in children it runs on the other core, without that lock, and the parent only judges.

The files are dealt to the children in turn (a large file's neighbours go to the
other), each child making and digesting its share as ``digest_files`` does in the
thread. A child sends back only what the parent needs, in large frames: for a file whose
digest is the database's (99 %) nothing, or, when the SHA-256 table is wanted
(collectors/rundigests.py), the stat fields the table keys on and the raw SHA-256; for
any other file, its tag and its whole ``Read``, which the parent judges as the thread
would. The parent thus
ends with the same report, findings, table and count. A child killed or failing is the
collector failing (CollectorError), never a short result.

A child of a threaded process must take no lock another thread may hold at the fork:
it logs nothing, journals nothing, writes no evidence and imports nothing (all of it
imported here); one hasher of each algorithm is made before the fork, so OpenSSL has
fetched them already. Pickle carries the odd results: the parent unpickles only what
its own child wrote."""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
from collections.abc import Callable, Iterable
from typing import TypeVar

from .filedigest import Extra, Read, Want, digest_files
from .forked import Send, can_fork, run_forked_all
from .rundigests import RunDigests

T = TypeVar("T")
_SHA = struct.Struct("=QQqqq32s")  # st_dev, st_ino, size, mtime_ns, ctime_ns, SHA-256
_COUNT = struct.Struct("=Q")
_DIGESTS, _ODD, _DONE = b"s", b"r", b"n"
_DIGEST_FRAME = 4096  # table entries a frame (~300 KB)
_ODD_FRAME = 256  # odd results a frame


def children() -> int:
    """How many children share the files: one a core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def usable(md5_engine: str) -> bool:
    """Digest in children? Where the process can fork, and with the lanes (the hashlib
    engine hashes in a thread pool, which a forked child must not start)."""
    return md5_engine != "hashlib" and can_fork() and children() > 1


def _share(
    wants: Callable[[int, int], Iterable[tuple[T, Want]]],
    part: int,
    parts: int,
    expect: Callable[[T], tuple[bytes, str]],
    extra: Extra | None,
    md5_engine: str,
) -> Callable[[Send], None]:
    def work(send: Send) -> None:
        digests: list[bytes] = []
        odd: list[tuple[T, Read]] = []
        count = 0
        for tag, read in digest_files(wants(part, parts), extra, md5_engine=md5_engine):
            count += 1
            want, algo = expect(tag)
            digest = read.digests.get(algo)
            if read.state != "ok" or digest is None or digest.encode() != want:
                odd.append((tag, read))
                if len(odd) >= _ODD_FRAME:
                    send(_ODD, pickle.dumps(odd, pickle.HIGHEST_PROTOCOL))
                    odd = []
                continue
            sha = read.digests.get("sha256")
            st = read.stat
            if sha is not None and st is not None:
                digests.append(
                    _SHA.pack(
                        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                        bytes.fromhex(sha),
                    )
                )  # fmt: skip
                if len(digests) >= _DIGEST_FRAME:
                    send(_DIGESTS, b"".join(digests))
                    digests = []
        if digests:
            send(_DIGESTS, b"".join(digests))
        if odd:
            send(_ODD, pickle.dumps(odd, pickle.HIGHEST_PROTOCOL))
        send(_DONE, _COUNT.pack(count))

    return work


def digest_in_children(
    wants: Callable[[int, int], Iterable[tuple[T, Want]]],
    expect: Callable[[T], tuple[bytes, str]],
    judge: Callable[[T, Read], None],
    extra: Extra | None,
    md5_engine: str,
    table: RunDigests | None,
) -> int:
    """Digest the files ``wants(part, parts)`` gives in each of ``parts`` children (every
    ``(tag, want)`` in exactly one part; the tags must pickle); ``judge(tag, read)`` here
    for each file whose digest is not the ``expect(tag)`` one (with its table entry put,
    as for the others); the number of files read returned. The wants are made in the
    children, from what the parent holds at the fork, so the parent never holds a list
    of them (nor does each child inherit one: peak memory as with the thread). Raises
    CollectorError when a child fails."""
    parts = children()
    for make in (hashlib.md5, hashlib.sha256):  # fetched by OpenSSL before the fork
        make()
    count = 0

    def on_frame(kind: bytes, payload: bytes) -> None:
        nonlocal count
        if kind == _DIGESTS:
            if table is not None:
                for dev, ino, size, mtime, ctime, sha in _SHA.iter_unpack(payload):
                    table.put_fields(dev, ino, size, mtime, ctime, sha)
        elif kind == _ODD:
            got: list[tuple[T, Read]] = pickle.loads(payload)  # noqa: S301 (our child's)
            for tag, read in got:
                if table is not None and "sha256" in read.digests and read.stat is not None:
                    table.put(read.stat, read.digests["sha256"])
                judge(tag, read)
        elif kind == _DONE:
            count += _COUNT.unpack(payload)[0]

    works = [_share(wants, k, parts, expect, extra, md5_engine) for k in range(parts)]
    run_forked_all(works, on_frame, _never)
    return count


def _never() -> bool:
    """The digest is not cut short by a stop (collectors/rundigests.py ``wait``)."""
    return False
