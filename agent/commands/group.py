"""The ``preserve`` command group: a collection by default, the subcommands (imported
when named) for the rest. Started by ``agent._cli.main``."""

from __future__ import annotations

import importlib
from typing import Any

import click

from .. import __version__
from ..kit import gate
from . import SUBCOMMANDS
from .collect import collection_options, run_collection


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})  # as click lists them

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return super().get_command(ctx, cmd_name)
        module, name = SUBCOMMANDS[cmd_name]
        command = getattr(importlib.import_module(f".{module}", __package__), name)
        assert isinstance(command, click.Command) and command.name == cmd_name
        return command


@click.group(
    cls=_LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
