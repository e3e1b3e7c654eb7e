"""The clock is checked, not trusted: a host clock set to 2001 (libfaketime, for this
process only: the machine's clock is untouched) is a HIGH finding that even ``-q`` shows,
that ``--json`` lists as degraded and that the journal keeps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, ROOT, collect_json, journal_records

from collectors.clock import parse_reference_time
from manifests.errors import UsageError


def _faked(out: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return subprocess.run(
        ["faketime", "2001-01-01 00:00:00", sys.executable, "-c", PRESERVE_CODE]
        + ["-o", str(out), "--only", "clock", "--reference-time", now, *args],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.skipif(shutil.which("faketime") is None, reason="needs faketime")
def test_a_clock_set_to_2001_is_a_high_finding_even_when_quiet(tmp_path: Path) -> None:
    quiet = _faked(tmp_path, "-q")
    assert quiet.returncode == 0, quiet.stderr.decode()
    box = quiet.stderr.decode()
    assert "DEGRADED (clock)" in box and "HIGH" in box and "--reference-time" in box
    [evidence] = list(tmp_path.iterdir())
    records = journal_records(evidence)
    degraded = [r for r in records if r.get("event") == "degraded" and r["view"] == "clock"]
    sources = {r["reason"].split(" by ")[0].split("disagrees with ")[1] for r in degraded}
    assert {"the responder's --reference-time", "the newest log or journal file"} <= sources
    [check] = [r for r in records if r.get("event") == "clock-check"]
    assert check["host_time"].startswith("2001-01-01")
    assert any(c["source"].endswith("--reference-time") for c in check["checks"])

    out = tmp_path / "json"
    out.mkdir()
    result = _faked(out, "--json")
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 0  # degraded is data, not a failure
    assert {d["view"] for d in summary["degraded"]} == {"clock"}
    assert all(d["severity"] == "high" for d in summary["degraded"])


def test_a_right_clock_is_not_flagged(tmp_path: Path) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary = collect_json(tmp_path, "--only", "clock", "--reference-time", now)
    assert summary["degraded"] == []


def test_reference_time_forms() -> None:
    assert parse_reference_time("@1000") == 1000 * 10**9
    assert parse_reference_time("2001-01-01T00:00:00Z") == 978307200 * 10**9
    assert parse_reference_time("2001-01-01T01:00:00+01:00") == 978307200 * 10**9
    assert parse_reference_time("2001-01-01 00:00") == 978307200 * 10**9  # UTC by default
    with pytest.raises(UsageError):
        parse_reference_time("yesterday")
