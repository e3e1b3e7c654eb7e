"""A FIFO swapped in for a regular file between a check and an open never blocks a read.

A child process renames a FIFO and a regular file over the same path in a loop while
the tool reads it many times; every read runs in a child of its own with a timeout, so a
read that blocked in ``open`` (a FIFO opened without ``O_NONBLOCK`` waits for a writer
that never comes) fails the test instead of hanging it. Each read must end with the
regular file's bytes or a refusal, never anything else."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IS_ROOT, ROOT

ROUNDS = 300
TIMEOUT = 60  # seconds for all the rounds; a blocked open never ends


def _swapper(path: Path) -> str:
    """A child's code: rename a fresh FIFO and a fresh regular file over ``path``, in turn,
    until it is killed."""
    return textwrap.dedent(
        f"""
        import os
        path = {str(path)!r}
        fifo, plain = path + ".fifo", path + ".plain"
        while True:
            os.mkfifo(fifo)
            os.rename(fifo, path)
            with open(plain, "wb") as f:
                f.write(b"regular bytes\\n")
            os.rename(plain, path)
        """
    )


@pytest.fixture
def swapped(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/victim``, a FIFO one moment and a regular file the next."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"regular bytes\n")
    child = subprocess.Popen([sys.executable, "-c", _swapper(victim)])
    try:
        yield victim
    finally:
        child.kill()
        child.wait()


def _rounds(code: str, timeout: int = TIMEOUT) -> list[str]:
    """Run ``code`` (which prints one outcome a line) in a child; its lines. A timeout is
    a read that blocked."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            cwd=ROOT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a read blocked on the FIFO swapped in for the file")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


def test_the_copy_engine_never_blocks_on_a_fifo_swapped_in(swapped: Path, tmp_path: Path) -> None:
    outcomes = _rounds(
        f"""
        import os
        import sys
        from pathlib import Path
        sys.path.insert(0, "tests")
        from collectors.copy import CopyEngine
        from evidence_factory import new_writer
        writer = new_writer(Path({str(tmp_path)!r}), "ev")
        engine = CopyEngine(writer)
        for n in range({ROUNDS}):
            record = engine.preserve(os.fsencode({str(swapped)!r}), f"artifacts/x{{n}}", "files")
            if record is None:
                print("refused")
            else:
                data = (writer.root / record["path"]).read_bytes()
                print("copied" if data == b"regular bytes\\n" else f"wrong {{data!r}}")
        writer.journal.close()
        """
    )
    assert len(outcomes) == ROUNDS
    assert set(outcomes) <= {"copied", "refused"}, set(outcomes)


def test_read_regular_never_blocks_on_a_fifo_swapped_in(swapped: Path) -> None:
    outcomes = _rounds(
        f"""
        from collectors.readfile import read_regular
        for _ in range({ROUNDS}):
            try:
                data = read_regular({str(swapped)!r}, 1024, follow=False)
            except OSError as e:
                print("refused")
            else:
                print("read" if data == b"regular bytes\\n" else f"wrong {{data!r}}")
        """
    )
    assert len(outcomes) == ROUNDS
    assert set(outcomes) <= {"read", "refused"}, set(outcomes)


def test_the_package_database_never_blocks_on_a_fifo_swapped_in(tmp_path: Path) -> None:
    """``/var/lib/dpkg/info/<package>.md5sums`` swapped for a FIFO while the database is
    read (the triage gate and persistence read it on every run)."""
    info = tmp_path / "root/var/lib/dpkg/info"
    info.mkdir(parents=True)
    victim = info / "trojan.md5sums"
    victim.write_bytes(b"regular bytes\n")
    child = subprocess.Popen([sys.executable, "-c", _swapper(victim)])
    try:
        outcomes = _rounds(
            f"""
            from collectors import dpkg
            for _ in range({ROUNDS}):
                db = dpkg.load({str(tmp_path / "root")!r}.encode())
                print("read" if db is not None else "none")
            """
        )
    finally:
        child.kill()
        child.wait()
    assert outcomes == ["read"] * ROUNDS


@pytest.mark.skipif(not IS_ROOT, reason="needs root for a private mount namespace")
@pytest.mark.parametrize(
    ("mounts", "call"),
    [
        (
            "mount --bind {fifo} /etc/machine-id && mount --bind {fifo} /var/lib/dbus/machine-id",
            "from collectors.hostinfo import machine_id as f",
        ),
        (
            "mount -t tmpfs none /run && mkfifo /run/utmp",
            "from collectors.clock import _recorded_boot as f",
        ),
    ],
    ids=["machine-id", "utmp"],
)
def test_host_identity_files_that_are_fifos_are_not_waited_on(
    tmp_path: Path, mounts: str, call: str
) -> None:
    """The machine id and the boot record are read from fixed paths; a FIFO there (in a
    private mount namespace: the machine's own files are untouched) is refused at once."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = f"{mounts.format(fifo=fifo)} && exec {sys.executable} -c '{call}; print(f())'"
    try:
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            cwd=ROOT,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the read blocked on a FIFO")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "None"
