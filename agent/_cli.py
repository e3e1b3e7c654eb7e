"""The ``preserve`` program. Light on purpose: for a remote ``-o``, ssh is started from
the command line first (``sinks.predial``), and only then is the command group, with
everything a collection imports, loaded (``commands.group``)."""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> None:
    from .sinks import predial

    predial.predial(sys.argv[1:] if args is None else args)
    try:
        from .commands.group import cli
        from .program import run_program

        run_program(cli, args, "preserve")
    finally:
        predial.abandon()  # not taken by a collection: ended, whatever ended the run
