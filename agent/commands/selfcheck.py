"""``preserve selfcheck``: is this kit exactly the one its builder signed?"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from collectors.bodywalk import lister
from collectors.lanedigest import available, md5_engine
from manifests.errors import UsageError
from manifests.signing import grouped, normalise_fingerprint

from ..kit import check_kit, loader_report, running_kit

EXIT_OK, EXIT_MODIFIED, EXIT_USAGE = 0, 1, 2
NO_HOST_LIBS = "none: every library mapped is the kit's own"


@click.command("selfcheck")
@click.option(
    "--kit",
    "kit_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Check this kit folder instead of the running one (e.g. from a lab machine).",
)
@click.option(
    "--fingerprint", metavar="HEX", help="Expected kit key fingerprint (from the kit's label)."
)
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable result.")
def selfcheck(kit_dir: Path | None, fingerprint: str | None, json_mode: bool) -> None:
    """Check the kit's files against its signed SHA256SUMS and show what the kit is."""
    kit = kit_dir or running_kit()
    if kit is None:
        raise UsageError(
            "not running from a kit (this is a development install)",
            hint="give --kit DIR to check a kit folder",
        )
    pin = None
    if fingerprint:
        try:
            pin = normalise_fingerprint(fingerprint)
        except ValueError as e:
            raise UsageError(
                f"--fingerprint: {e}", hint="copy it from the kit's label (spaces are fine)"
            ) from e
    result = check_kit(kit, pin)
    if kit_dir is None:  # the running kit: also show what the host's loader added
        result.loader = loader_report(kit)
    if json_mode:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        sys.exit(EXIT_OK if result.ok else EXIT_MODIFIED)
    info = result.info
    click.echo(f"Kit:        {kit}")
    click.echo(
        f"Version:    preserve {info.get('version', '?')}, built {info.get('built', '?')} "
        f"on {info.get('build_host_glibc', '?')}, Python {info.get('python', '?')}"
    )
    click.echo(
        f"Runs on:    Linux {info.get('arch', '?')}, kernel {info.get('kernel_floor', '?')} or "
        f"newer, with the kit's own glibc {info.get('glibc_bundled', '?')} (none of the host's)"
    )
    loader = info.get("loader")
    if not isinstance(loader, dict):
        loader = {}
    click.echo(
        f"Loader:     {loader.get('path', '?')} (preload list {loader.get('preload_path', '?')}, "
        "never the host's /etc/ld.so.preload; no ld.so.cache)"
    )
    click.echo(f"MD5:        {md5_engine()} (this kit and CPU run {', '.join(available())})")
    click.echo(f"Timeline:   {lister()} lister of bodyfile lines")
    if result.fingerprint:
        state = {
            "matched": "pinned, matches",
            "mismatch": "DOES NOT MATCH the pinned key",
            None: "not pinned: compare it with the kit's label, or pass --fingerprint",
        }[result.pin]
        click.echo(f"Kit key:    {grouped(result.fingerprint)} ({state})")
    if result.sums_sha256:
        click.echo(f"Sums:       sha256 {result.sums_sha256}")
    click.echo(f"Files:      {result.checked} checked, {len(result.problems)} problems")
    if result.loader is not None:
        names = ", ".join(os.path.basename(p) for p in result.loader["host_libraries"])
        click.echo(f"Host libs:  {names or NO_HOST_LIBS}")
        warning = result.loader_warning()
        if warning:
            click.echo(f"WARNING: {warning}")
    for problem in result.problems:
        click.echo(f"FAIL {problem}")
    if result.ok:
        click.echo(f"OK: the kit at {kit} is intact")
    else:
        click.echo(
            f"FAIL: the kit at {kit} is modified; use an intact copy of the kit "
            "(write down that this one failed)"
        )
    sys.exit(EXIT_OK if result.ok else EXIT_MODIFIED)
