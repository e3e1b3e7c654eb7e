"""The ``packages`` digest loop in forked children, one a core (collectors/forked.py): the
~110,000 dpkg files cost ~5 s of per-file Python (open, fstat, result objects), nearly
all under the interpreter lock, where ``executables`` and ``persistence`` need it too;
in children it runs on the other core, without that lock, and the parent only judges.

The files are dealt to the children in turn (a large file's neighbours go to the
other), each child making its share. The MD5-only files (all but the executables whose
SHA-256 the table wants) go in batches to the check in C (``lanedigest.MD5Check``:
open, check, hash and compare, no Python a file), which names only the files that are
not a regular file with the recorded MD5; those and the others are digested as
``digest_files`` does in the thread, so their ``Read`` is the thread's. A child sends
back only what the parent needs, in large frames: for a file whose digest is the
database's (99 %) nothing, or, when the SHA-256 table is wanted
(collectors/rundigests.py), the stat fields the table keys on and the raw SHA-256; for
any other file, its tag and its whole ``Read``, which the parent judges as the thread
would. The parent thus ends with the same report, findings, table and count. A child
killed or failing is the collector failing (CollectorError), never a short result.

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
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from .filedigest import Extra, Read, Want, digest_files
from .forked import Send, can_fork, run_forked_all
from .lanedigest import MD5Check, md5_check
from .rundigests import RunDigests

T = TypeVar("T")
_SHA = struct.Struct("=QQqqq32s")  # st_dev, st_ino, size, mtime_ns, ctime_ns, SHA-256
_COUNT = struct.Struct("=Q")
_DIGESTS, _ODD, _DONE = b"s", b"r", b"n"
_DIGEST_FRAME = 4096  # table entries a frame (~300 KB)
_ODD_FRAME = 256  # odd results a frame
_BATCH = 4096  # files a check in C (lanedigest.md5_check)
_MD5_ONLY = (("md5",), None, None)  # a Want's algorithms, seen and xattr the check can do
# A host path -> 0: nothing but MD5 is wanted of it; 1: SHA-256 too where its mode has an
# execute bit; 2: more than MD5 whatever its mode (what ``extra`` will ask, before the stat)
Screen = Callable[[bytes], int]


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


class _Child(Generic[T]):
    """A child's share: the MD5-only files in batches to the check in C
    (``lanedigest.md5_check``), the rest, and what that check names, through
    ``digest_files``; what the parent needs sent as it comes."""

    def __init__(
        self,
        send: Send,
        expect: Callable[[T], tuple[bytes, str]],
        extra: Extra | None,
        md5_engine: str,
    ) -> None:
        self.send, self.expect, self.extra, self.engine = send, expect, extra, md5_engine
        self.digests: list[bytes] = []
        self.odd: list[tuple[T, Read]] = []
        self.count = 0
        self.handed = 0  # files handed to the check in C
        self.held: dict[int, tuple[T, Want]] = {}  # those of them still in its lanes

    def batch(
        self, items: list[tuple[T, Want]], sums: list[bytes], marks: bytes | None,
        check: MD5Check, last: bool = False,
    ) -> list[tuple[T, Want]]:  # fmt: skip
        """The batch's files to the check in C: the files it names (of this batch or of
        one before, a large file's), to be read again here."""
        first = self.handed
        self.handed += len(items)
        named, held = check.run([want.path for _, want in items], sums, marks, last)

        def item(k: int) -> tuple[T, Want]:
            return items[k - first] if k >= first else self.held[k]

        self.count += len(items) + len(self.held) - len(held) - len(named)
        again = [item(k) for k in named]
        self.held = {k: item(k) for k in held}
        return again

    def read(self, items: Iterable[tuple[T, Want]]) -> None:
        """Files read through the Python path, each judged as in the thread."""
        for tag, read in digest_files(items, self.extra, md5_engine=self.engine):
            self.count += 1
            want, algo = self.expect(tag)
            digest = read.digests.get(algo)
            if read.state != "ok" or digest is None or digest.encode() != want:
                self.odd.append((tag, read))
                if len(self.odd) >= _ODD_FRAME:
                    self.send(_ODD, pickle.dumps(self.odd, pickle.HIGHEST_PROTOCOL))
                    self.odd = []
                continue
            sha = read.digests.get("sha256")
            st = read.stat
            if sha is not None and st is not None:
                self.digests.append(
                    _SHA.pack(
                        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                        bytes.fromhex(sha),
                    )
                )  # fmt: skip
                if len(self.digests) >= _DIGEST_FRAME:
                    self.send(_DIGESTS, b"".join(self.digests))
                    self.digests = []

    def end(self) -> None:
        if self.digests:
            self.send(_DIGESTS, b"".join(self.digests))
        if self.odd:
            self.send(_ODD, pickle.dumps(self.odd, pickle.HIGHEST_PROTOCOL))
        self.send(_DONE, _COUNT.pack(self.count))


def _python_path(
    share: Iterable[tuple[T, Want]], child: _Child[T], check: MD5Check, screen: Screen | None
) -> Iterator[tuple[T, Want]]:
    """The files of ``share`` the check in C cannot do, and those it named, as the
    Python path asks for them: one ``digest_files`` over the whole share (its lanes full
    to the end, never drained between batches), the batches in C run as it pulls."""
    items: list[tuple[T, Want]] = []
    sums: list[bytes] = []
    marks = bytearray()
    for tag, want in share:
        recorded, algo = child.expect(tag)
        mark = screen(want.path) if screen is not None else 0
        if mark > 1 or algo != "md5" or want[1:] != _MD5_ONLY:
            yield tag, want
            continue
        items.append((tag, want))
        sums.append(recorded)
        marks.append(mark)
        if len(items) >= _BATCH:
            yield from child.batch(items, sums, bytes(marks) if screen else None, check)
            items, sums, marks = [], [], bytearray()
    yield from child.batch(items, sums, bytes(marks) if screen else None, check, True)


def _share(
    wants: Callable[[int, int], Iterable[tuple[T, Want]]],
    part: int,
    parts: int,
    expect: Callable[[T], tuple[bytes, str]],
    extra: Extra | None,
    md5_engine: str,
    screen: Screen | None,
) -> Callable[[Send], None]:
    def work(send: Send) -> None:
        child = _Child(send, expect, extra, md5_engine)
        # an Extra without its screen could want more than MD5 of any file: Python reads all
        check = md5_check(md5_engine) if extra is None or screen is not None else None
        share = wants(part, parts)
        child.read(share if check is None else _python_path(share, child, check, screen))
        child.end()

    return work


def digest_in_children(
    wants: Callable[[int, int], Iterable[tuple[T, Want]]],
    expect: Callable[[T], tuple[bytes, str]],
    judge: Callable[[T, Read], None],
    extra: Extra | None,
    md5_engine: str,
    table: RunDigests | None,
    screen: Screen | None = None,
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

    works = [_share(wants, k, parts, expect, extra, md5_engine, screen) for k in range(parts)]
    run_forked_all(works, on_frame, _never)
    return count


def _never() -> bool:
    """The digest is not cut short by a stop (collectors/rundigests.py ``wait``)."""
    return False
