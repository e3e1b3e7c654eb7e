"""The live progress: it moves while one large file is read, it says how much is left,
and where stderr is not a terminal it is one heartbeat line now and then."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, ROOT, run_cli

from agent.console import Console, Estimate, plural, progress_line

GiB = 1024**3


def test_plural_forms() -> None:
    assert plural(1, "item") == "1 item"
    assert plural(0, "item") == "0 items"
    assert plural(1024, "problem") == "1,024 problems"


def test_progress_line_without_an_estimate() -> None:
    assert progress_line(1, 2 * 1024**2, 2.0, None) == "1 item  2.0 MiB  1.0 MiB/s"


def test_progress_line_of_an_estimate_with_time_left() -> None:
    line = progress_line(3, GiB, 10.0, Estimate(10, 4 * GiB))
    assert line == "3 of 10 items  1.0 GiB of 4.0 GiB (25%)  102.4 MiB/s  about 30 s left"


def test_progress_line_of_a_lower_bound_says_at_least() -> None:
    line = progress_line(3, GiB, 10.0, Estimate(10, 2 * GiB, at_least=True))
    assert "of at least 10 items" in line and "of at least 2.0 GiB" in line
    assert "%" not in line and "at least 10 s left" in line


def test_progress_past_the_estimate_gives_no_time_left() -> None:
    line = progress_line(3, 3 * GiB, 10.0, Estimate(2, 2 * GiB))
    assert "left" not in line and "%" not in line


def test_heartbeat_lines_on_a_non_terminal() -> None:
    stream = io.StringIO()
    console = Console(stream=stream, heartbeat=0.1)
    done = [0]
    console.start_progress(lambda: (done[0] // 100, done[0]), Estimate(5, 500))
    for _ in range(5):
        done[0] += 100
        time.sleep(0.06)
    console.stop_progress()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and "\r" not in stream.getvalue()
    assert all(line.startswith("      progress: ") for line in lines), lines
    assert "of 5 items" in lines[-1] and "of 500 B" in lines[-1]


def test_quiet_and_json_draw_nothing() -> None:
    for kw in ({"quiet": True}, {"json_mode": True}):
        stream = io.StringIO()
        console = Console(stream=stream, heartbeat=0.01, **kw)  # type: ignore[arg-type]
        console.start_progress(lambda: (1, 1))
        time.sleep(0.05)
        console.stop_progress()
        assert stream.getvalue() == ""


def test_json_run_prints_only_the_json(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    result = run_cli("-o", tmp_path / "out", "--only", "files", "--path", src, "--json")
    assert result.returncode == 0, result.stderr.decode()
    json.loads(result.stdout)  # the one object, nothing around it
    assert result.stdout.count(b"\n") == 1 and b"progress" not in result.stderr


_COUNTER = re.compile(r"(\d+(?:\.\d+)? (?:B|KiB|MiB|GiB))(?: of [^ ]+ [KMG]?i?B)?")


def _two_readings_in_tmux(tmp_path: Path, src: Path, marker: str) -> list[str]:
    """Run a collection of ``src`` in a real terminal (tmux) and return two progress lines
    (those containing ``marker``) captured 0.7 s apart, both before the copy ended."""
    session = f"preserve-progress-{tmp_path.name}"
    command = shlex.join(
        [sys.executable, "-c", PRESERVE_CODE, "-o", str(tmp_path / "out")]
        + ["--only", "files", "--path", str(src)]
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", "-c", str(ROOT)]
        + [f"{command}; echo FINISHED; sleep 60"],
        check=True,
    )
    try:
        readings: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(readings) < 2:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            assert "FINISHED" not in screen, f"the copy ended before two readings:\n{screen}"
            line = next((ln for ln in screen.splitlines() if marker in ln), None)
            if line is not None:
                readings.append(line.strip())
                time.sleep(0.7)  # more than the 0.5 s between redraws
            else:
                time.sleep(0.1)
        assert len(readings) == 2, "no progress line appeared"
        return readings
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_single_large_file_moves_the_counter_on_a_terminal(tmp_path: Path) -> None:
    """One 4 GiB sparse file takes seconds to hash; two captures 0.7 s apart must show
    different byte counts before the copy ends."""
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["truncate", "-s", "4G", str(src / "big.img")], check=True)
    readings = _two_readings_in_tmux(tmp_path, src, " of 1 item ")
    first, second = (_COUNTER.findall(r.split("  ")[1])[0] for r in readings)
    assert first != second, readings
    assert "of 4.0 GiB" in readings[1] and "left" in readings[1], readings


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_many_file_tree_moves_the_item_count_on_a_terminal(tmp_path: Path) -> None:
    """40,000 small files take a few seconds to store (20,000 took barely a second once
    small files were copied in C): the item count moves between two captures 0.7 s apart,
    against the pre-scan's total."""
    src = tmp_path / "src"
    for n in range(40_000):
        d = src / f"d{n // 1000:02d}"
        if n % 1000 == 0:
            d.mkdir(parents=True)
        (d / f"f{n:05d}.log").write_bytes(b"x" * (n % 512))
    readings = _two_readings_in_tmux(tmp_path, src, " of 40,000 items ")
    counts = [re.search(r"([\d,]+) of 40,000 items", r) for r in readings]
    done = [int(m[1].replace(",", "")) for m in counts if m is not None]
    assert len(done) == 2 and done[0] < done[1] < 40_000, readings
    assert "left" in readings[1], readings
