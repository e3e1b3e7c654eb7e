"""More SFTP sessions for the artifacts' bytes ("lanes"), over the openssh transport.

OpenSSH's sftp-server answers one request after another, so a single session's upload
waits on every reply chain in turn: on two cores a quarter of the machine sat idle for
the whole transfer, with OpenSSH's own ``sftp`` client as with preserve, and two
sessions side by side moved the same bytes in two thirds of the time
(bench/RESULTS.md, 7 December). Each copy thread therefore writes the files it creates
through a session of its own: another ``ssh`` to the same server, with the same pins
(checked by ssh itself, as for the first) and the same key. The journal, the run log,
directories, renames and reads stay on the first session, whose replies then never queue
behind a file's bytes.

Order is kept where it matters: a file is opened on a lane only after the journal line
announcing it was acknowledged on the first session (``SftpSink.create``), and a seal
waits for every lane's fsync and CLOSE replies (``sftpfile.Closing``). A lane that does
not come up (a server limiting logins, a slow handshake) is no error: until one is up,
or without any, files go through the first session as before. A lane that breaks later
is a lost link like any other."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

LANES = 2  # sessions besides the first: one per copy worker on a two-core host

_Opened = concurrent.futures.Future[tuple[Any, Any]]  # (connection, SFTP client)


class Lanes:
    """The extra sessions, opening in the background; each thread keeps the one it was
    given once every lane has come up or failed (before that, it asks at each file)."""

    def __init__(self, opening: list[_Opened]) -> None:
        self._opening = opening
        self._ready: list[tuple[Any, Any]] = []
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._turn = 0

    def _settle(self) -> None:
        """Move the lanes that finished opening to ready (or failed); under the lock."""
        still: list[_Opened] = []
        for future in self._opening:
            if not future.done():
                still.append(future)
            elif future.cancelled() or future.exception() is not None:
                self.failed.append(str(future.exception() if not future.cancelled() else "-"))
            else:
                self._ready.append(future.result())
        self._opening = still

    def for_this_thread(self) -> Any | None:
        """The SFTP client this thread's next file goes through; None: the first session."""
        kept = getattr(self._local, "sftp", None)
        if kept is not None:
            return kept
        with self._lock:
            self._settle()
            if not self._ready:
                return None
            _, sftp = self._ready[self._turn % len(self._ready)]
            self._turn += 1
            final = not self._opening
        if final:
            self._local.sftp = sftp
        return sftp

    def opened(self) -> list[tuple[Any, Any]]:
        with self._lock:
            self._settle()
            return list(self._ready)

    def broken(self) -> bool:
        return any(conn.is_closed() for conn, _ in self.opened())

    def abort(self) -> None:
        """Every lane dropped at once, and those still opening given up."""
        with self._lock:
            opening = list(self._opening)
        for future in opening:
            future.cancel()
        for conn, _ in self.opened():
            conn.abort()
