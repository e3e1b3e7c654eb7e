"""macOS unified logs: ``log collect`` into a ``.logarchive`` bundle inside the evidence
directory; every file of the bundle is then hashed and journalled as it is.

Availability: macOS (needs root). Plain-text logs under ``/var/log`` and
``/Library/Logs`` are read by the POSIX path like on Linux. Unit-tested here with the
exact command; it cannot run on Linux."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from .context import CollectContext
from .logprofile import Profile
from .walk import walk

LOG = "/usr/bin/log"
TIMEOUT = 1800
Runner = Callable[..., subprocess.CompletedProcess[bytes]]


def collect_argv(dest: str, last: str | None) -> list[str]:
    argv = [LOG, "collect", "--output", dest]
    if last:
        argv += ["--last", last]
    return argv


def collect(ctx: CollectContext, profile: Profile, run: Runner = subprocess.run) -> None:
    if not profile.macos_unified_log:
        return
    rel = ctx.engine.reserve("artifacts/logs/macos/system_logs.logarchive")
    argv = collect_argv(str(ctx.root / rel), profile.macos_last)
    try:
        result = run(argv, capture_output=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        ctx.error("logs", f"{LOG} not found; unified logs not collected")
        return
    except subprocess.TimeoutExpired:
        ctx.error("logs", f"log collect took more than {TIMEOUT} s; stopped")
    else:
        ctx.journal.append("action", collector="logs", command=argv, returncode=result.returncode)
        if result.returncode != 0:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            ctx.error(
                "logs",
                f"log collect failed (exit {result.returncode}): "
                f"{err[0][:200] if err else 'no message'}; run as root",
            )
    # Whatever the command left (a partial bundle after a timeout too) is accounted for.
    bundle = os.fsencode(ctx.root / rel)
    if not os.path.isdir(bundle):
        return
    root = os.fsencode(ctx.root)
    for path in walk(bundle, lambda p, e: None):
        ctx.engine.adopt(
            os.fsdecode(os.path.relpath(path, root)),
            "logs",
            kind="macos-unified-log",
            command=argv,
        )
