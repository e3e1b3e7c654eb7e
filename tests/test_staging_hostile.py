"""A web script that grows while the staging collector reads it: an intruder who can
write to the web root (www-data) starts, the moment the tool opens the file (inotify
``IN_OPEN``), to extend it by a gigabyte a step with ``truncate`` (a sparse file: no
memory, no disk, but reading it never reaches the end). The hash is of the file as it
was at open; the run must end. In a private mount namespace (tests/hostns.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

from hostns import run_on_planted_host

GROW = """
import ctypes, os, sys
libc = ctypes.CDLL(None)
fd = libc.inotify_init1(0)
path = os.fsencode(sys.argv[1])
assert libc.inotify_add_watch(fd, path, 0x20) >= 0  # IN_OPEN
os.read(fd, 4096)
open("/mnt/out/opened", "w").close()
size = os.stat(path).st_size
while True:
    size += 1 << 30
    os.truncate(path, size)
"""
SETUP = f"""
mkdir -p /var/www/html
printf '<?php echo 1; ?>\\n' > /var/www/html/grow.php
cat > /mnt/grow.py <<'PY'
{GROW}PY
python3 /mnt/grow.py /var/www/html/grow.php </dev/null >/dev/null 2>&1 &
echo $! > /mnt/out/writers
sleep 0.5
"""


def test_a_script_growing_while_it_is_hashed_does_not_hold_the_run(tmp_path: Path) -> None:
    try:
        summary, evidence = run_on_planted_host(tmp_path, SETUP, "--only", "staging")
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(int((tmp_path / "out/writers").read_text()), signal.SIGKILL)
    assert (tmp_path / "out/opened").exists()  # it did grow while the tool read it
    assert summary["status"] == "complete", summary
    rows = [json.loads(line) for line in (evidence / "artifacts/staging/webroots.jsonl").open()]
    [grow] = [r for r in rows if r["path"] == "/var/www/html/grow.php"]
    assert grow["size"] == 17  # as the walk saw it
