"""Memory stays bounded as the number of files grows: neither ``preserve`` nor ``verify``
may keep per-file state for the whole run (issue 12 asks for < 150 MB at 1,000,000
files; ``bench/bench_million.py`` measures that).

Measured as growth: the peak RSS of a 50,000-file run minus that of a 100-file run, so
the interpreter's own size does not matter. Before the bounded design the growth was
35 MB for ``preserve`` (every stored name and digest kept) and 98 MB for ``verify``
(every record and every stat in dicts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, ROOT

pytestmark = pytest.mark.slow

MANY = 50_000
PRESERVE_GROWTH_MIB = 20
VERIFY_GROWTH_MIB = 40


def _peak_mib(*args: str | os.PathLike[str], verify: bool = False) -> int:
    """Run the command line as ``run_cli`` does; its peak RSS in MiB."""
    code = "from agent.commands.verify import main; main()" if verify else PRESERVE_CODE
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *map(os.fsencode, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss // 1024


def _tree(root: Path, files: int) -> Path:
    for n in range(files):
        directory = root / f"d{n // 1000:03d}"
        if n % 1000 == 0:
            directory.mkdir(parents=True)
        (directory / f"f{n:06d}").write_bytes(b"x" * (n % 512))
    return root


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """On tmpfs when there is one: creating 100,000 files on ext4 takes a minute."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_preserve_and_verify_memory_does_not_grow_with_the_number_of_files(
    scratch: Path,
) -> None:
    peaks = {}
    for files in (100, MANY):
        src, out = _tree(scratch / f"src{files}", files), scratch / f"out{files}"
        collect = _peak_mib("-q", "-o", out, "--only", "files", "--path", src)
        evidence = next(out.iterdir())
        peaks[files] = (collect, _peak_mib("-q", evidence, verify=True))
    preserve_growth = peaks[MANY][0] - peaks[100][0]
    verify_growth = peaks[MANY][1] - peaks[100][1]
    assert preserve_growth < PRESERVE_GROWTH_MIB, peaks
    assert verify_growth < VERIFY_GROWTH_MIB, peaks
