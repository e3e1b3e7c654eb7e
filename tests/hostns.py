"""A run of ``preserve`` against a host laid out by the test, in a private mount namespace
(``unshare -m --propagation private``) so this machine's own /etc, /var, /tmp, /dev/shm
and /srv are never touched: /etc and /var get a writable overlay on a tmpfs, /tmp,
/var/tmp, /dev/shm and /srv a fresh tmpfs each. The setup script plants what the test
needs (web roots, a Docker state directory, a FIFO in /tmp), then ``preserve`` runs
there, writing its evidence through a bind mount into the test's own directory.

The checkout itself is bound at /mnt/checkout and ``preserve`` runs from there, so a clone
under /tmp (``git clone . /tmp/x && bash .ci/run``) is not hidden by the fresh /tmp; files
a test built (under /tmp too) can be bound at /mnt/stage."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import PRESERVE_ARGV, ROOT

_PREPARE = """set -e
mount -t tmpfs scratch /mnt
mkdir -p /mnt/out /mnt/checkout /mnt/stage /mnt/etc-up /mnt/etc-work /mnt/var-up /mnt/var-work
mount --bind "$OUT" /mnt/out
if [ -n "$STAGE" ]; then mount --bind "$STAGE" /mnt/stage; fi
mount --bind "$CHECKOUT" /mnt/checkout
mount -t overlay overlay -o lowerdir=/etc,upperdir=/mnt/etc-up,workdir=/mnt/etc-work /etc
mount -t overlay overlay -o lowerdir=/var,upperdir=/mnt/var-up,workdir=/mnt/var-work /var
for d in /tmp /var/tmp /dev/shm /srv; do mkdir -p "$d"; mount -t tmpfs staged "$d"; done
chmod 1777 /tmp /var/tmp /dev/shm
cd /mnt/checkout
"""
_CHECKOUT = "/mnt/checkout"
CAPS_PROFILE = "/mnt/caps.toml"  # where ``caps_profile`` writes it, inside the namespace


def caps_profile(**triage: int) -> str:
    """The setup lines writing a profile at ``CAPS_PROFILE`` with these ``[triage]`` caps
    (and one source that does not exist, so no log is copied): a run then takes
    ``--profile CAPS_PROFILE``."""
    caps = "".join(f"{key} = {value}\n" for key, value in triage.items())
    return (
        f"cat > {CAPS_PROFILE} <<'EOF'\n"
        'version = 1\ndescription = "test caps"\n'
        '[[source]]\nroot = "/var/log/none"\ndescription = "nothing"\n'
        f"[triage]\n{caps}EOF\n"
    )


def _seen_from_checkout(path: str) -> str:
    """``path`` as the namespace sees it: a file of this checkout (its venv's python) by
    way of /mnt/checkout, anything else unchanged."""
    inside = Path(path)
    if inside.is_relative_to(ROOT):
        return str(Path(_CHECKOUT) / inside.relative_to(ROOT))
    return path


def run_on_planted_host(
    tmp_path: Path, setup: str, *args: str, stage: Path | None = None
) -> tuple[dict, Path]:
    """(``--json`` summary, evidence directory) of ``preserve ARGS`` on the planted host.
    ``stage``: a directory of the test's own files (built under /tmp, which the namespace
    hides), bound at /mnt/stage for the setup to copy from."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private mount namespace (CI runs as root)")
    out = tmp_path / "out"
    out.mkdir()
    python, *code = PRESERVE_ARGV
    command = [_seen_from_checkout(python), *code, "--json", "-o", "/mnt/out", *args]
    argv = " ".join(f"'{a}'" for a in command)
    script = _PREPARE + setup + f"\nexec {argv}\n"
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        cwd=ROOT, env={**os.environ, "OUT": str(out), "CHECKOUT": str(ROOT),
                       "STAGE": str(stage or "")},
        capture_output=True, timeout=120,
    )  # fmt: skip
    if result.returncode not in (0, 1) or not result.stdout:
        raise AssertionError(result.stderr.decode()[-3000:])
    summary = json.loads(result.stdout)
    evidence = out / Path(summary["evidence_dir"]).name
    return summary, evidence
