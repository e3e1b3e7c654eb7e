"""Shared fixtures: the real command lines run as subprocesses, as a responder would run
them, and a collection context for driving a collector directly."""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from evidence_factory import copy_evidence, make_source_tree, new_writer
from kit_build import kit  # noqa: F401  (the session's one kit build, for tests/test_kit*.py)

from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine

if TYPE_CHECKING:
    from netns_topology import Topology

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0

# The preserve command line, run from this checkout (no installed script needed).
PRESERVE_CODE = "from agent._cli import main; main()"
PRESERVE_ARGV = [sys.executable, "-c", PRESERVE_CODE]

requires_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the package once: the hundreds of ``preserve`` runs the suite starts read
    the bytecode instead of each compiling every module again (this environment sets
    PYTHONDONTWRITEBYTECODE, which stops Python writing it, not reading it)."""
    for package in ("agent", "collectors", "manifests"):
        compileall.compile_dir(ROOT / package, quiet=2, workers=0)


def run_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: bytes | None = None,
    prog: str = "preserve",
) -> subprocess.CompletedProcess[bytes]:
    """Run ``preserve`` or ``verify`` from this checkout with a clean, explicit environment."""
    code = (
        "import sys; from agent.commands.verify import main; sys.argv[0]='verify'; main()"
        if prog == "verify"
        else PRESERVE_CODE
    )
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *map(os.fsencode, args)],
        capture_output=True,
        env=full_env,
        timeout=timeout,
        input=input,
        cwd=ROOT,
    )


def preserve(*args: str | os.PathLike[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run_cli(*args, **kw)  # type: ignore[arg-type]


def verify(*args: str | os.PathLike[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run_cli(*args, prog="verify", **kw)  # type: ignore[arg-type]


def collect_json(
    output: Path, *args: str | os.PathLike[str], expect: tuple[int, ...] = (0,), **kw: object
) -> dict:
    """Run ``preserve --json -o OUTPUT ARGS`` and return its summary object."""
    result = preserve("--json", "-o", output, *args, **kw)
    assert result.returncode in expect, (result.returncode, result.stderr.decode())
    return json.loads(result.stdout)


def journal_records(evidence_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (evidence_dir / "custody.jsonl").read_bytes().splitlines()]


# -- a collection context without the command line, for driving collectors directly --


class _Log:
    def info(self, *a: object, **k: object) -> None: ...

    warning = info


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[CollectContext]:
    writer = new_writer(tmp_path)
    root, journal = writer.root, writer.journal
    engine = CopyEngine(writer)
    yield CollectContext(root, journal, engine, Options(), log=_Log())
    engine.shutdown()
    journal.close()


@pytest.fixture
def net() -> Iterator[Topology]:
    """The isolation tests' throw-away network of namespaces, deleted even on failure."""
    from netns_topology import Topology  # it imports this module

    topo = Topology()
    try:
        yield topo
    finally:
        topo.close()


# -- one collection per test module, and a fresh copy of it for each test to tamper with --


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(evidence directory, signer fingerprint) of a small collection, made once a module."""
    base = tmp_path_factory.mktemp("pristine")
    src = make_source_tree(base)
    summary = collect_json(base / "out", "--only", "files", "--path", src, "--case", "C-1")
    return Path(summary["evidence_dir"]), summary["fingerprint"]


@pytest.fixture
def evidence(pristine: tuple[Path, str], tmp_path: Path) -> Path:
    """A copy of ``pristine`` that a test may damage (modules may define their own)."""
    return copy_evidence(pristine[0], tmp_path)
