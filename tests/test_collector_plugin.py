"""A collector found only through its ``preserve.collectors`` entry point runs like a
built-in: a tiny distribution (a ``*.dist-info`` directory and a module, on PYTHONPATH, no
pip install) is picked by ``--only``, listed by ``--help``, its artifact is journaled and
``verify`` passes. A plug-in that is not a collector is skipped with a warning, and not
offered by ``--help``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from conftest import collect_json, journal_records, preserve, verify

from collectors.base import Collector
from collectors.registry import load_collectors

PLUGIN = """
from collectors.base import Collector, Stage


class MarkerCollector(Collector):
    name = "marker"
    stage = Stage.SLOW
    description = "one marker file (a test plug-in)"

    def collect(self, ctx):
        ctx.engine.store_bytes("artifacts/marker/marker.txt", MARKER, self.name, kind="marker")


class NotACollector:
    name = "notacollector"


MARKER = b"stored by a collector found through its entry point\\n"
"""

ENTRY_POINTS = """\
[preserve.collectors]
marker = preserve_test_marker:MarkerCollector
notacollector = preserve_test_marker:NotACollector
"""

MARKER = b"stored by a collector found through its entry point\n"
BUILTINS = {
    "auditrules",
    "fileflags",
    "locate",
    "pacct",
    "accounts",
    "boot",
    "browsers",
    "clock",
    "containers",
    "credentials",
    "executables",
    "files",
    "journald",
    "mail",
    "kernel",
    "logs",
    "network",
    "persistence",
    "packages",
    "processes",
    "staging",
    "procfiles",
    "procmem",
    "system",
    "timeline",
}


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    dist = site / "preserve_test_marker-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: preserve-test-marker\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "preserve_test_marker.py").write_text(PLUGIN)
    return {"PYTHONPATH": str(site)}


def test_a_collector_found_only_through_its_entry_point_runs(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    summary = collect_json(tmp_path / "out", "--only", "marker", env=plugin_env)
    evidence = Path(summary["evidence_dir"])
    assert summary["status"] == "complete" and summary["counts"]["stored"] == 1
    assert (evidence / "artifacts/marker/marker.txt").read_bytes() == MARKER
    records = journal_records(evidence)
    assert records[0]["collectors"] == ["marker"]
    artifact = next(r for r in records if r["type"] == "artifact" and r["collector"] == "marker")
    assert artifact["path"] == "artifacts/marker/marker.txt"
    assert artifact["sha256"] == hashlib.sha256(MARKER).hexdigest()
    assert any(r["type"] == "collector" and r["name"] == "marker" for r in records)
    result = verify(evidence, "--fingerprint", summary["fingerprint"])
    assert result.returncode == 0, result.stdout.decode()


def test_only_and_skip_help_list_the_collectors_found(plugin_env: dict[str, str]) -> None:
    def listed(help_text: str, option: str) -> set[str]:
        block = re.search(rf"{option} NAMES\s+(.*?)\n  -", help_text, re.S)
        assert block, help_text
        installed = re.search(r"Installed:\s+([\w\s,-]+)\.", block.group(1))
        assert installed, block.group(1)
        return {n.strip() for n in installed.group(1).split(",")}

    plain = preserve("--help")
    assert plain.returncode == 0
    with_plugin = preserve("--help", env=plugin_env)
    for option in ("--only", "--skip"):
        assert listed(plain.stdout.decode(), option) == BUILTINS
        assert listed(with_plugin.stdout.decode(), option) == BUILTINS | {"marker"}


def test_a_plugin_that_is_not_a_collector_is_skipped_with_a_warning(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    result = preserve("-o", tmp_path / "out", "--only", "marker", env=plugin_env)
    assert result.returncode == 0, result.stderr.decode()
    assert b"collector notacollector: not a collector class" in result.stderr
    assert b"(plug-in skipped)" in result.stderr and b"Traceback" not in result.stderr
    refused = preserve("-o", tmp_path / "out2", "--only", "notacollector", env=plugin_env)
    assert refused.returncode == 2 and b"unknown collector(s) notacollector" in refused.stderr


def test_the_builtins_are_entry_points_that_keep_the_contract() -> None:
    """Built-ins are found the same way as plug-ins, and none is skipped by the check."""
    failures: list[str] = []
    loaded = load_collectors(lambda name, e: failures.append(f"{name}: {e}"))
    assert failures == []
    assert set(loaded) == BUILTINS
    assert all(issubclass(c, Collector) and c.name == n for n, c in loaded.items())


def test_the_worked_example_in_the_architecture_doc_runs(tmp_path: Path) -> None:
    """docs/architecture.md's one-file collector, as printed there (its spool pointed at a
    test directory), collects and verifies: the example cannot drift from the contract."""
    doc = (Path(__file__).parent.parent / "docs/architecture.md").read_text()
    code = re.search(r"```python\n# collectors/crontabs.py\n(.*?)```", doc, re.S)
    assert code, "the worked example is missing from docs/architecture.md"
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "root").write_text("* * * * * /tmp/.x/run\n")
    source = code.group(1).replace("from .", "from collectors.")
    source = source.replace('b"/var/spool/cron/crontabs"', repr(bytes(spool)))
    site = tmp_path / "site"
    dist = site / "doc_example-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: doc-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[preserve.collectors]\ncrontabs = doc_example_crontabs:CrontabsCollector\n"
    )
    (site / "doc_example_crontabs.py").write_text(source)
    env = {"PYTHONPATH": str(site)}
    summary = collect_json(tmp_path / "out", "--only", "crontabs", env=env)
    evidence = Path(summary["evidence_dir"])
    assert summary["counts"]["stored"] == 1, summary
    [stored] = (evidence / "artifacts/crontabs").rglob("root")
    assert stored.read_text() == "* * * * * /tmp/.x/run\n"
    assert verify(evidence).returncode == 0
