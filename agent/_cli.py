"""The ``preserve`` command line: collection by default, subcommands for the rest."""

from __future__ import annotations

import sys
from typing import Any

import click

from . import __version__
from .commands.collect import check_kit_or_refuse, collection_options, run_collection
from .commands.custody import custody
from .commands.export import export_command
from .commands.keygen import keygen
from .commands.release import release
from .commands.report import report_command
from .commands.selfcheck import selfcheck
from .commands.verify import verify_command


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="preserve")
@collection_options
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """Preserve evidence from this host into a signed, hash-chained evidence directory.

    \b
    Examples:
      preserve -o /media/kit/evidence --case IR-42 --examiner "A. Admin"
      preserve -o /media/kit/evidence --only files --path /var/www
      verify /media/kit/evidence/web01-20261127T031500Z
    """
    if ctx.invoked_subcommand is None:
        ctx.exit(run_collection(**options))
    if ctx.invoked_subcommand != "selfcheck":
        check_kit_or_refuse(options["kit_modified_ok"])


cli.add_command(keygen)
cli.add_command(custody)
cli.add_command(release)
cli.add_command(verify_command)
cli.add_command(report_command)
cli.add_command(export_command)
cli.add_command(selfcheck)


def main(args: list[str] | None = None) -> None:
    debug = "--debug" in (args if args is not None else sys.argv)
    try:
        # Without standalone mode, click returns ctx.exit()'s code instead of exiting.
        code = cli.main(args=args, prog_name="preserve", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(2)
    except click.UsageError as e:
        e.show()
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:
        if debug:
            raise
        click.echo(f"error: {type(e).__name__}: {e} (run again with --debug for details)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
