"""The ``preserve`` command line: collection by default, subcommands for the rest."""

from __future__ import annotations

from typing import Any

import click

from . import __version__
from .commands.collect import collection_options, run_collection
from .commands.custody import custody
from .commands.export import export_command
from .commands.fleet_summary import fleet_summary_command
from .commands.image import image_command
from .commands.keygen import keygen
from .commands.release import release
from .commands.report import report_command
from .commands.selfcheck import selfcheck
from .commands.verify import verify_command
from .kit import gate
from .program import run_program


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
        gate(options["kit_modified_ok"])  # a modified kit: KitModifiedError, exit 2


cli.add_command(keygen)
cli.add_command(custody)
cli.add_command(release)
cli.add_command(verify_command)
cli.add_command(report_command)
cli.add_command(export_command)
cli.add_command(image_command)
cli.add_command(selfcheck)
cli.add_command(fleet_summary_command)


def main(args: list[str] | None = None) -> None:
    run_program(cli, args, "preserve")
