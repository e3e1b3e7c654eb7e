"""The kit, built for real once per test session (shared by tests/test_kit*.py through
conftest.py, so one build serves them all), and how a responder runs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the kit once (or use PRESERVE_TEST_KIT, an already built kit folder)."""
    given = os.environ.get("PRESERVE_TEST_KIT")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("kitbuild")
    result = subprocess.run(
        [ROOT / "packaging" / "build-kit", "--out", out, "--new-key", out / "key" / "kit.key"],
        capture_output=True,
        timeout=900,
    )
    if result.returncode in (3, 4):
        pytest.skip("the kit cannot be built here: " + result.stderr.decode()[-300:])
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return out / "preserve-kit"


def run_kit(
    kit: Path, prog: str, *args: object, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in CLEAN_ENV.items()), kit / prog, *map(str, args)],
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
    )
