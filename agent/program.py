"""Running a command as a program: the one place where an error becomes what the user
reads and the exit code, for ``preserve`` (agent/_cli.py) and ``verify``
(agent/commands/verify.py) alike.

The library raises errors of the family in manifests/errors.py; each says what happened,
what to do next and which exit code it means. Here it becomes one line on stderr,
``error: <message>; <hint>``, with the traceback before it only under ``--debug``.
click's own usage errors (an unknown option, a missing argument) print the usage and the
same ``error:`` line, and exit 2. Anything else is a bug: one line with its type, and exit 1."""

from __future__ import annotations

import gc
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

import click

from manifests.errors import PreserveError, describe

from .console import printable


def run_program(
    command: click.Command,
    args: list[str] | None,
    prog_name: str,
    before: Callable[[], None] | None = None,
) -> NoReturn:
    """Run ``command`` (after ``before``, e.g. the kit's self-check) and exit."""
    debug = "--debug" in (sys.argv[1:] if args is None else args)
    try:
        _run(command, args, prog_name, before, debug)
    finally:
        if args is None:  # a process of its own (not a caller's, e.g. a test's): it ends
            # Everything is written, sealed and closed by now. The interpreter's last
            # collection would walk every object of the ~500 modules imported, for
            # nothing: frozen, it does not (60-90 ms of every run's end, bench/RESULTS.md).
            gc.freeze()


def _run(
    command: click.Command,
    args: list[str] | None,
    prog_name: str,
    before: Callable[[], None] | None,
    debug: bool,
) -> NoReturn:
    try:
        if before is not None:
            before()
        # Without standalone mode, click returns ctx.exit()'s code instead of exiting and
        # lets every exception through to the handlers below.
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(2)
    except click.ClickException as e:  # click's own: bad option, missing argument (exit 2)
        ctx = getattr(e, "ctx", None)
        if isinstance(e, click.UsageError) and ctx is not None:
            click.echo(ctx.get_usage(), err=True)
            click.echo(f"Try '{ctx.command_path} --help' for help.", err=True)
        # the same "error:" as every other message, not click's "Error:"
        click.echo(printable(f"error: {e.format_message()}"), err=True)
        sys.exit(e.exit_code)
    except Exception as e:
        if debug:
            traceback.print_exception(e)
        line = f"error: {describe(e)}"
        if not isinstance(e, PreserveError) and not debug:
            line += " (run again with --debug for details)"
        # Messages quote paths and journal text: nothing may forge a second line.
        click.echo(printable(line), err=True)
        sys.exit(e.exit_code if isinstance(e, PreserveError) else 1)
    sys.exit(code if isinstance(code, int) else 0)
