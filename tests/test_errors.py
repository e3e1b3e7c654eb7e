"""One error family, turned into a message and an exit code in one place: whatever raises
it (a collector deep in a run, the verifier, a command), the user reads one ``error:``
line with what to do next, and the exit code is the contract's."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import journal_records, preserve, run_cli, verify

from collectors.errors import CollectorError
from manifests.errors import EvidenceLostError, PreserveError, UsageError

# Every module that defines a member of the family, so that the walk below sees them all.
FAMILY_MODULES = [
    "manifests.errors",
    "collectors.errors",
    "collectors.logprofile",
    "agent.isolation.base",
    "agent.isolation.allowlist",
    "agent.report.deadlines",
    "agent.kit",
]

BROKEN = "the widget table is locked by another process"
BROKEN_HINT = "close the widget console, then run again"

PLUGIN = f"""
from collectors.base import Collector, Stage
from collectors.errors import CollectorError
from manifests.errors import UsageError


def _read_table(path):
    raise CollectorError({BROKEN!r}, hint={BROKEN_HINT!r})


def _open_widgets(ctx):
    return _read_table(b"/var/lib/widgets/table")


class Broken(Collector):
    name = "broken"
    stage = Stage.VOLATILE
    order = 99
    default = False
    description = "a test plug-in whose collect() fails deep down"

    def collect(self, ctx):
        _open_widgets(ctx)


class Misconfigured(Broken):
    name = "misconfigured"

    def configure(self, options):
        raise UsageError("widget mode 'turbo' is not known", hint="use --widget-mode safe")
"""


def _plugin_path(tmp_path: Path) -> dict[str, str]:
    """A plug-in installed the way a third party's is: a module and an entry point."""
    site = tmp_path / "site"
    dist = site / "preserve_test_widgets-0.dist-info"
    dist.mkdir(parents=True)
    (site / "preserve_test_widgets.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: preserve-test-widgets\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [preserve.collectors]
            broken = preserve_test_widgets:Broken
            misconfigured = preserve_test_widgets:Misconfigured
            """
        )
    )
    return {"PYTHONPATH": str(site)}


def _lines_with(text: str, stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if text in line]


def test_an_error_deep_in_a_collector_reaches_the_user_as_one_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "kept.txt").write_text("the rest is still collected\n")
    out = tmp_path / "out"
    env = _plugin_path(tmp_path)

    result = preserve("-o", out, "--only", "broken,files", "--path", src, env=env)

    assert result.returncode == CollectorError.exit_code == 1, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    [line] = _lines_with(BROKEN, result.stderr)
    assert BROKEN_HINT in line and "CollectorError" not in line, line
    [evidence] = out.iterdir()
    [error] = [r for r in journal_records(evidence) if r["type"] == "error"]
    assert error["collector"] == "broken"
    assert error["reason"] == f"collector failed: {BROKEN}; {BROKEN_HINT}"
    assert (evidence / "artifacts" / "files").is_dir()  # the run went on and sealed
    assert verify(evidence).returncode == 0


def test_an_error_from_a_collectors_configure_stops_before_collecting(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = preserve("-o", out, "--only", "misconfigured", env=_plugin_path(tmp_path))
    assert result.returncode == UsageError.exit_code == 2, result.stderr.decode()
    assert result.stderr.decode().splitlines() == [
        "error: widget mode 'turbo' is not known; use --widget-mode safe"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "{dir}"],
        ["preserve", "verify", "{dir}"],
        ["preserve", "custody", "{dir}", "--to", "Lab", "--key", "{dir}/lab.key"],
        ["preserve", "report", "{dir}"],
        ["preserve", "export", "{dir}", "--format", "case"],
        ["preserve", "release", "--evidence", "{dir}", "--key", "{dir}/lab.key"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_every_command_maps_an_error_the_same_way(tmp_path: Path, args: list[str]) -> None:
    """Not an evidence directory: exit 2 and one line, from every command that reads one."""
    prog, *rest = args
    result = run_cli(*(a.format(dir=tmp_path) for a in rest), prog=prog)
    assert result.returncode == 2, result.stderr.decode()
    [line] = result.stderr.decode().splitlines()
    assert line.startswith(f"error: {tmp_path} is not an evidence directory"), line
    assert "; give the directory that 'preserve' created" in line  # what to do next


def test_clicks_own_usage_errors_still_exit_2() -> None:
    for result in (preserve("--no-such-option"), verify()):
        assert result.returncode == 2
        assert b"Usage:" in result.stderr and b"Traceback" not in result.stderr


def test_debug_adds_the_traceback_and_keeps_the_exit_code(tmp_path: Path) -> None:
    result = preserve("--debug", "custody", tmp_path, "--to", "Lab", "--key", tmp_path / "k")
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("Traceback") and "NotEvidenceError" in result.stderr.decode()
    assert lines[-1].startswith(f"error: {tmp_path} is not an evidence directory")


def _family() -> list[type[PreserveError]]:
    for name in FAMILY_MODULES:
        importlib.import_module(name)
    found, todo = [], [PreserveError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_of_the_family_exits_with_a_code_of_the_contract() -> None:
    """0 is success and 4 is an outcome (isolation not in effect), never an error; 3 is
    the evidence directory lost under the run, and only that."""
    family = _family()
    assert len(family) > 10
    for cls in family:
        assert cls.exit_code in (1, 2) or cls.__name__ == "EvidenceLostError", cls
    assert [c for c in family if c.exit_code == 3] == [EvidenceLostError]


def test_a_hint_says_what_to_do_next_after_the_message() -> None:
    assert UsageError("no -o", hint="give -o DIR").diagnostics() == "no -o; give -o DIR"
    assert UsageError("no -o").diagnostics() == "no -o"


_FROZEN_AT_EXIT = """
import atexit, gc, os
import click
from agent.program import run_program
atexit.register(lambda: print("frozen" if gc.get_freeze_count() else "not frozen"))
command = click.Command("x", callback=lambda: None)
run_program(command, None if os.environ["MODE"] == "own" else [], "x")
"""


@pytest.mark.parametrize(("args", "expected"), [("own", "frozen"), ("caller", "not frozen")])
def test_a_program_of_its_own_freezes_its_objects_before_exit(args: str, expected: str) -> None:
    """The last collection at exit would walk every object of every module imported:
    a process that ends there freezes them first; run in a caller's process (args
    given), nothing is done to that process's collector."""
    done = subprocess.run(
        [sys.executable, "-c", _FROZEN_AT_EXIT],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MODE": args},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
