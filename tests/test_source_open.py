"""How every collector opens a host file (collectors/source.py)."""

from __future__ import annotations

import os

from collectors.source import open_source


def test_a_terminal_where_a_file_was_expected_never_becomes_the_runs_terminal() -> None:
    """A session leader without a terminal that opens a tty takes it as its controlling
    terminal unless O_NOCTTY is given: a terminal device planted in a package's place
    would then receive the run's hang-ups and let the planter signal it."""
    master, slave = os.openpty()
    name = os.fsencode(os.ttyname(slave))
    os.close(slave)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its exit status
        code = 2
        try:
            os.setsid()  # a new session: no controlling terminal
            fd = open_source(name)
            try:
                os.close(os.open("/dev/tty", os.O_RDWR))
                code = 1  # the opened tty became the controlling terminal
            except OSError:
                code = 0
            os.close(fd)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0
