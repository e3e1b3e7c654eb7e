"""One command line: every command has -h/--help, --version where it is a program, and
metavars that say what goes there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import preserve, run_cli

COMMANDS = [
    "",
    "keygen",
    "custody",
    "release",
    "verify",
    "report",
    "export",
    "selfcheck",
    "fleet-summary",
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_help_exits_0(command: str, flag: str) -> None:
    result = preserve(*([command] if command else []), flag)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Usage:" in result.stdout and not result.stderr


def test_metavars_say_file_dir_path() -> None:
    top = preserve("--help").stdout.decode()
    assert "-o, --output DIR" in top and "--key FILE" in top and "--path PATH" in top
    keygen = preserve("keygen", "--help").stdout.decode()
    assert "-o, --output, --out DIR" in keygen
    assert "--evidence DIR" in preserve("release", "--help").stdout.decode()
    assert "--kit DIR" in preserve("selfcheck", "--help").stdout.decode()


def test_verify_help_and_version_like_preserve() -> None:
    for flag in ("-h", "--help"):
        result = run_cli(flag, prog="verify")
        assert result.returncode == 0 and b"Usage: verify" in result.stdout
    version = run_cli("--version", prog="verify")
    assert version.returncode == 0 and version.stdout.startswith(b"verify, version ")
    assert preserve("--version").stdout.startswith(b"preserve, version ")


def test_keygen_takes_o_and_keeps_out(tmp_path: Path) -> None:
    for flag, name in (("-o", "a"), ("--out", "b")):
        result = preserve("keygen", flag, tmp_path, "--name", name, "--no-passphrase")
        assert result.returncode == 0, result.stderr.decode()
        assert (tmp_path / f"{name}.key").exists()


def test_a_collection_imports_no_subcommand_nor_the_watcher() -> None:
    """Start-up imports only what a collection needs (bench/RESULTS.md): the subcommands
    and the ``--watch`` file watcher come when asked for."""
    code = (
        "import sys; import agent.commands.group; "
        "print(sorted(m for m in sys.modules if m.startswith(('agent.commands.', 'watchdog',"
        " 'agent.watch', 'collectors.logwatch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "['agent.commands._run_options', 'agent.commands.collect', 'agent.commands.group', "
        "'agent.commands.run_checks']"
    )
