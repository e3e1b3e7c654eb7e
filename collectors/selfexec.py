"""How this program starts another copy of itself, the same way in a kit and a dev install.

In the kit, ``sys.executable`` is the frozen program under ``_internal/``; started
directly, the HOST's loader would run it (and map what ``/etc/ld.so.preload`` names into
it). A child of the kit must go through the kit's static launcher (``KIT/preserve``),
which starts it through the kit's own loader, exactly as the responder's command did.
The launcher's program understands ``-m MODULE`` for the project's own modules
(packaging/kit_entry.py), as ``python -m`` does in a development install."""

from __future__ import annotations

import os
import sys

INTERNAL = "_internal"


def frozen_kit_dir() -> str | None:
    """The kit folder when this process is a frozen build, else None. The program lives
    in ``KIT/_internal/``; an older flat layout had it in ``KIT/`` itself."""
    if not getattr(sys, "frozen", False):
        return None
    here = os.path.dirname(os.path.realpath(sys.executable))
    return os.path.dirname(here) if os.path.basename(here) == INTERNAL else here


def module_command(module: str) -> list[str]:
    """argv that runs ``python -m module`` as this same program."""
    kit = frozen_kit_dir()
    if kit is not None:
        return [os.path.join(kit, "preserve"), "-m", module]
    return [sys.executable, "-m", module]
