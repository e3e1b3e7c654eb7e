"""A degraded view (here: a host clock the responder's --reference-time contradicts) is
never quiet after collection either: it heads the report's findings, ``verify`` says it
in its summary (with ``-q`` too, and in ``--json``), and the report's deadlines say which
clock they are counted from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import collect_json, preserve, verify

REFERENCE = "2001-09-09T01:46:40Z"  # the responder's watch: the host clock is 25 years on


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("skew") / "out"
    summary = collect_json(out, "--only", "clock", "--reference-time", REFERENCE)
    assert any(d["view"] == "clock" for d in summary["degraded"])
    return Path(summary["evidence_dir"])


def test_report_puts_the_degraded_view_first_and_counts_deadlines_on_the_reference(
    skewed: Path,
) -> None:
    result = preserve("report", skewed, "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    first = data["findings"][0]
    assert first["degraded"] is True and first["severity"] == "high"
    assert "clock" in first["title"] and first["why"]
    assert any("skew (seconds)" in d for d in first["details"])
    assert "disagreed (clock)" in " ".join(data["summary"])
    d = data["deadlines"]
    assert d["detected_at"].startswith("2001-09-09 01:46")  # corrected onto the responder's
    assert "--reference-time" in d["clock"] and "ahead" in d["clock"]
    md = preserve("report", skewed).stdout.decode()
    findings = md.split("## Findings", 1)[1]
    assert findings.lstrip().startswith("- **[HIGH] DEGRADED VIEW**")
    assert "on the responder's own clock" in md


def test_verify_summary_names_the_degraded_view_even_with_q(skewed: Path) -> None:
    for args in ((), ("-q",)):
        result = verify(skewed, *args)
        assert result.returncode == 0  # the evidence is intact: data, not a failure
        out = result.stdout.decode()
        assert "DEGRADED:  1 view of the host disagreed" in out, out
        assert "HIGH clock: the host clock" in out
    data = json.loads(verify(skewed, "--json").stdout)
    assert data["degraded_count"] == 1 and data["degraded"][0]["view"] == "clock"
