"""The options a collection and ``preserve image`` share: where evidence goes, who signs
it, and how the run talks to the responder. One list each, so both commands spell them
the same way and a new output option reaches both."""

from __future__ import annotations

from pathlib import Path

import click

from ..params import OutputDir

OUTPUT_OPTIONS = [
    click.option(
        "-o",
        "--output",
        type=OutputDir(),
        metavar="DIR",
        help="Where evidence directories are created (the kit's drive), or "
        "sftp://USER@HOST[:PORT]/PATH: on a server, nothing on the host.",
    ),
    click.option(
        "--sink-host-key",
        metavar="FINGERPRINT|FILE",
        help="For sftp://: the server's pinned host key (SHA256:... as ssh-keygen -lf "
        "prints it, or a known_hosts file).",
    ),
    click.option(
        "--sink-key",
        type=click.Path(dir_okay=False, path_type=Path),
        help="For sftp://: the upload account's private key (passphrase from "
        "PRESERVE_SINK_KEY_PASSPHRASE or a prompt).",
    ),
    click.option(
        "--sink-no-fsync",
        is_flag=True,
        help="For sftp://: accept a server without fsync@openssh.com (recorded).",
    ),
    click.option(
        "--sink-timeout",
        type=click.FloatRange(1, 3600),
        metavar="SECONDS",
        help="For sftp://: how long the link may be silent (writes wait, in memory) "
        "before the run stops (default 60).",
    ),
    click.option(
        "--sink-reconnect",
        type=click.FloatRange(0, 3600),
        metavar="SECONDS",
        help="For sftp://: after the link was lost, how long to keep trying to reconnect "
        "to seal what the server holds (default: the --sink-timeout; 0: do not).",
    ),
    click.option(
        "--sink-transport",
        type=click.Choice(["openssh", "asyncssh"]),
        default="openssh",
        show_default=True,
        help="For sftp://: OpenSSH's ssh (the kit's own copy in a kit) or the in-process "
        "asyncssh client (slower, no subprocess).",
    ),
    click.option("--case", metavar="ID", help="Case or incident ID, recorded in the journal."),
    click.option("--examiner", metavar="NAME", help="Who is collecting, recorded in the journal."),
    click.option("--note", help="Free text recorded in the journal."),
    click.option(
        "--key",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Ed25519 signing key (PEM). Without it an ephemeral key is used.",
    ),
]
MODE_OPTIONS = [
    click.option(
        "--json", "json_mode", is_flag=True, help="Print one JSON summary object on stdout."
    ),
    click.option("-q", "--quiet", is_flag=True, help="Print only the closing summary."),
    click.option("--debug", is_flag=True, help="Show tracebacks."),
]
