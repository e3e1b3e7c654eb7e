"""Trees 5,000 levels deep (past PATH_MAX and Python's recursion limit) through every
walker of the tool: collected with ``--path`` and verified, reported, exported and handed
over; planted in an evidence directory; planted in a responder kit. None may crash, and
none may skip anything."""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import collect_json, journal_records, preserve, verify
from deeptree import make_deep, scratch
from evidence_factory import copy_evidence

from agent.kit import KIT_INFO, KIT_PUB, KIT_SIG, KIT_SUMS, check_kit
from manifests import localdir
from manifests import sink as sink_module
from manifests.digest import sha256_bytes
from manifests.signing import Signer, public_key_pem
from manifests.sums import format_sums

DEPTH = 5000
_PASS = {"PRESERVE_KEY_PASSPHRASE": "deep tree lab key"}
ACCEPTED = (
    b"2026-11-26T21:20:00.000000+00:00 web01 sshd[902]: Accepted publickey for mallory "
    b"from 203.0.113.9 port 50022 ssh2\n"
)


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    """A scratch directory for deep trees; the commands run meanwhile (children inherit
    the limit) may open no more than the usual default of 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
    try:
        with scratch(tmp_path) as base:
            yield base
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _clean(result: object) -> tuple[str, str]:
    out = result.stdout.decode(errors="replace")  # type: ignore[attr-defined]
    err = result.stderr.decode(errors="replace")  # type: ignore[attr-defined]
    assert "Traceback" not in err and "RecursionError" not in out + err, err[-2000:]
    return out, err


def test_a_tree_5000_levels_deep_is_collected_and_verifies(deep: Path) -> None:
    src = deep / "src"
    src.mkdir()
    bottom = make_deep(src, DEPTH, files_at=(0, 1000, 2500, DEPTH - 1))
    summary = collect_json(deep / "out", "--only", "files", "--path", src, timeout=600)
    evidence = Path(summary["evidence_dir"])
    assert summary["counts"]["stored"] == 5 and summary["counts"]["failed"] == 0, summary
    sources = [r.get("source", {}).get("path") for r in journal_records(evidence)]
    assert os.fsdecode(os.fsencode(src) + b"/" + bottom) in sources
    out, _ = _clean(result := verify(evidence, timeout=600))
    assert result.returncode == 0, out[-2000:]
    assert "OK:" in out


def _planted(pristine: tuple[Path, str], deep: Path) -> Path:
    """A copy of the pristine evidence with a tree 5,000 levels deep planted in it."""
    evidence = copy_evidence(pristine[0], deep)
    planted = evidence / "artifacts" / "planted"
    planted.mkdir()
    make_deep(planted, DEPTH)
    return evidence


def test_a_tree_5000_levels_deep_planted_in_evidence_fails_verify_cleanly(
    pristine: tuple[Path, str], deep: Path
) -> None:
    evidence = _planted(pristine, deep)
    result = verify(evidence, "--json", timeout=600)
    _clean(result)
    assert result.returncode == 1
    problems = json.loads(result.stdout)["files"]["problems"]
    assert [p["status"] for p in problems] == ["unexpected"], problems
    assert problems[0]["path"].startswith("artifacts/planted/d/d/")
    assert problems[0]["path"].endswith("/bottom.txt")
    out, _ = _clean(verify(evidence, timeout=600))
    assert "FAIL unexpected: artifacts/planted/d/d/" in out


def _lab_key(base: Path) -> Path:
    keys = base / "keys"
    assert preserve("keygen", "--out", keys, "--name", "lab", env=_PASS).returncode == 0
    return keys / "lab.key"


def test_a_tree_5000_levels_deep_is_reported_exported_and_handed_over(deep: Path) -> None:
    """The report reads a stored auth log 5,000 levels down (one name at a time, below
    the evidence directory), the exports list it, and custody verifies before it signs."""
    src = deep / "src"
    src.mkdir()
    bottom = make_deep(src, DEPTH, files_at=(0, 2500), bottom=b"auth.log", bottom_data=ACCEPTED)
    summary = collect_json(deep / "out", "--only", "files", "--path", src, timeout=600)
    evidence = Path(summary["evidence_dir"])
    for fmt in ("md", "html", "json"):
        result = preserve("report", evidence, "--format", fmt, timeout=600)
        out, err = _clean(result)
        assert result.returncode == 0, err[-2000:]
    data = json.loads(out)
    login = next(f for f in data["findings"] if f["category"] == "logins")
    assert "mallory from 203.0.113.9" in login["title"]
    assert login["refs"][0]["artifact"].endswith("/".join(["d"] * 3 + ["auth.log"]))
    host_path = os.fsdecode(os.fsencode(src) + b"/" + bottom)
    for fmt in ("case", "bodyfile", "hashdeep", "sha256sum"):
        result = preserve("export", evidence, "--format", fmt, timeout=600)
        out, err = _clean(result)
        assert result.returncode == 0, err[-2000:]
        assert os.fsdecode(bottom) in out
        if fmt in ("case", "bodyfile"):
            assert host_path in out
    handed = preserve(
        "custody", evidence, "--to", "Lab", "--key", _lab_key(deep), env=_PASS, timeout=600
    )
    _, err = _clean(handed)
    assert handed.returncode == 0, err[-2000:]
    assert verify(evidence, timeout=600).returncode == 0


def test_a_tree_5000_levels_deep_planted_in_evidence_fails_report_export_and_custody(
    pristine: tuple[Path, str], deep: Path
) -> None:
    evidence = _planted(pristine, deep)
    result = preserve("report", evidence, "--format", "json", timeout=600)
    out, err = _clean(result)
    assert result.returncode == 1 and "FAILED verification" in err
    problems = json.loads(out)["verification"]["problems"]
    assert any(p.startswith("unexpected: artifacts/planted/d/d/") for p in problems), problems
    for fmt in ("md", "html"):
        result = preserve("report", evidence, "--format", fmt, timeout=600)
        _clean(result)
        assert result.returncode == 1
    for fmt in ("case", "hashdeep"):
        result = preserve("export", evidence, "--format", fmt, timeout=600)
        _, err = _clean(result)
        assert result.returncode == 1 and "FAILED verification" in err
    refused = preserve(
        "custody", evidence, "--to", "Lab", "--key", _lab_key(deep), env=_PASS, timeout=600
    )
    _, err = _clean(refused)
    assert refused.returncode == 1 and "does not verify" in err


def test_the_sink_stores_a_file_5000_levels_deep_with_few_descriptors(deep: Path) -> None:
    sink = sink_module.LocalDirSink.create_new(deep, "evidence")
    rel = "/".join(["d"] * DEPTH + ["f"])
    baseline = len(os.listdir("/proc/self/fd"))
    try:
        stored = sink.create(rel)
        stored.write(b"at the bottom\n")
        stored.close()
        assert len(os.listdir("/proc/self/fd")) - baseline <= localdir._DIR_CACHE + 1
        fd = sink.open_read(rel)
        assert os.read(fd, 100) == b"at the bottom\n"
        os.close(fd)
    finally:
        sink.close()


def _kit(base: Path) -> Path:
    """A signed kit folder as build-kit lays it out, without freezing anything."""
    kit = base / "kit"
    kit.mkdir()
    signer = Signer.generate_ephemeral()
    (kit / "preserve").write_bytes(b"#!/bin/sh\n")
    (kit / KIT_INFO).write_text(json.dumps({"version": "0.1.0", "built": "now"}))
    (kit / KIT_PUB).write_bytes(public_key_pem(signer.public_key))
    names = ("preserve", KIT_INFO, KIT_PUB)
    sums = format_sums((n, sha256_bytes((kit / n).read_bytes())) for n in names)
    (kit / KIT_SUMS).write_bytes(sums)
    (kit / KIT_SIG).write_bytes(signer.sign(sums))
    (kit / "evidence").mkdir()
    return kit


def test_the_kit_self_check_walks_a_tree_5000_levels_deep(deep: Path) -> None:
    kit = _kit(deep)
    assert check_kit(kit).ok, check_kit(kit).problems
    make_deep(kit / "evidence", DEPTH)  # the kit's output: not part of the kit
    assert check_kit(kit).ok
    (kit / "lib").mkdir()
    bottom = make_deep(kit / "lib", DEPTH)
    result = check_kit(kit)
    assert not result.ok and result.checked == 3
    assert result.problems == [f"lib/{os.fsdecode(bottom)}: added (not in the signed sums)"]
