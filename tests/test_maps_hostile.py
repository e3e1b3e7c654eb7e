"""A library whose file name holds a line separator that is not a newline. The kernel
escapes ``\\n`` in ``/proc/PID/maps`` (as ``\\012``), but not U+0085 (NEL), U+2028, or
the C0 separators ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, which ``str.splitlines``
also breaks at: the mapping's line was cut in two, its path lost its `` (deleted)``, and
a library loaded from a home and then deleted (fileless: ``dlopen``, ``unlink``) was no
``injected-library``. On a host planted in a private mount namespace (tests/hostns.py)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
from conftest import journal_records
from hostns import run_on_planted_host

from collectors import fdtable

LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1"
HOLD = """
import ctypes, os, sys, time
ctypes.CDLL(sys.argv[1])
os.unlink(sys.argv[1])
open("/mnt/out/ready", "w").close()
time.sleep(300)
"""
SETUP = f"""
mkdir -p /srv/app/.cache
lib="/srv/app/.cache/libz$(printf '\\302\\205')helper.so"
cp {LIBZ} "$lib"
cat > /mnt/hold.py <<'PY'
{HOLD}PY
python3 /mnt/hold.py "$lib" </dev/null >/dev/null 2>&1 &
echo $! > /mnt/out/holder
while [ ! -e /mnt/out/ready ]; do sleep 0.05; done
"""


def test_a_deleted_library_named_with_a_line_separator_is_still_injected(
    tmp_path: Path,
) -> None:
    if not os.path.exists(LIBZ):
        pytest.skip("needs Debian's x86-64 zlib")
    try:
        summary, evidence = run_on_planted_host(
            tmp_path, SETUP, "--only", "processes,procfiles", "--process-memory", "off"
        )
        holder = int((tmp_path / "out/holder").read_text())
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(int((tmp_path / "out/holder").read_text()), signal.SIGKILL)
    found = [
        r for r in journal_records(evidence)
        if r.get("event") == "finding" and r["rule"] == "injected-library"
        and r["source"]["path"] == f"/proc/{holder}/maps"
    ]  # fmt: skip
    assert found, "the deleted library was not found"
    assert "helper.so (deleted)" in str(found[0])


@pytest.mark.parametrize("sep", ["\x85", "\u2028", "\x0b", "\x0c", "\x1c", "\x1e", "\r"])
def test_maps_lines_break_at_newlines_only(sep: str) -> None:
    text = (
        f"7f0000000000-7f0000001000 r-xp 00000000 08:01 42 /home/a/lib{sep}x.so (deleted)\n"
        "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]\n"
    )
    maps = fdtable.parse_maps(text)
    assert [m.path for m in maps] == [f"/home/a/lib{sep}x.so (deleted)", "[stack]"]
    assert maps[0].deleted
