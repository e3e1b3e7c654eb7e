"""``preserve --isolate --dry-run``: show the exact rules and commands; change nothing.

It also collects nothing (no evidence directory, no state file): a dry run is for reading
the plan before the real run, and a half-collection under a different name would only
confuse the custody record."""

from __future__ import annotations

import json
import textwrap

import click

from .base import Step
from .engine import Isolation


def show_dry_run(isolation: Isolation, json_mode: bool) -> int:
    result = isolation.dry_run()
    if json_mode:
        click.echo(json.dumps({"dry_run": True, **result}, sort_keys=True))
        return 0
    lines = [
        "preserve --isolate --dry-run: nothing was changed and nothing collected.",
        f"method:      {result['method']}",
        f"stays open:  {'; '.join(result['stays_open'])}",
        f"probes:      {', '.join(result['probes']) or 'none (no routes)'} (must be blocked)",
    ]
    lines += [f"note:        {n}" for n in result["plan"]["notes"]]
    lines.append("apply:")
    for step in result["plan"]["apply"]:
        lines.append(textwrap.indent(Step.from_dict(step).shell(), "  "))
    lines.append("release (preserve release):")
    for step in result["plan"]["release"]:
        lines.append(textwrap.indent(Step.from_dict(step).shell(), "  "))
    if "syntax_check" in result:
        lines.append(f"syntax check (nft -c -f -): {result['syntax_check']}")
    if result.get("hook_plan_output"):
        lines.append("hook plan output:")
        lines.append(textwrap.indent(result["hook_plan_output"].rstrip(), "  "))
    click.echo("\n".join(lines))
    return 0
