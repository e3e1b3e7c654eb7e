"""The executables collector: every executable in the system paths and every file in the
staging directories hashed (SHA-256, as sha256sum says), one streamed artifact; SUID and
capability files listed with owner and times; a SUID copy in a staging directory that no
package owns is a HIGH finding, an executable there a MEDIUM one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import journal_records

from collectors.context import CollectContext, Options
from collectors.executables import ExecutablesCollector
from collectors.logprofile import load_profile


def _listing(ctx: CollectContext, root: Path) -> dict[str, dict[str, Any]]:
    """The collector run on the tree ``root``: its sha256.jsonl rows by path."""
    ctx.options = Options(only=("executables",))
    collector = ExecutablesCollector()
    collector.root = os.fsencode(root)
    collector.collect(ctx)
    lines = (ctx.root / "artifacts/executables/sha256.jsonl").read_text().splitlines()
    return {r["path"]: r for r in map(json.loads, lines)}


def test_hashes_suid_and_capabilities(ctx: CollectContext, tmp_path: Path) -> None:
    root = tmp_path / "host"
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info / "passwd.list").write_text("/usr/bin/passwd\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/passwd").write_bytes(b"real passwd")
    os.chmod(root / "usr/bin/passwd", 0o4755)  # packaged SUID: listed, not a finding
    (root / "usr/bin/data.txt").write_bytes(b"not executable")
    (root / "dev/shm").mkdir(parents=True)
    suid = root / "dev/shm/.sh"
    suid.write_bytes(b"copy of a shell")
    os.chmod(suid, 0o4755)
    (root / "tmp").mkdir()
    (root / "tmp/notes").write_bytes(b"staged, not executable")
    ping = root / "usr/bin/ping"
    ping.write_bytes(b"ping")
    os.chmod(ping, 0o755)
    setcap = shutil.which("setcap")
    if setcap:
        subprocess.run([setcap, "cap_net_raw+ep", str(ping)], check=True)
    rows = _listing(ctx, root)
    assert set(rows) == {
        f"{root}/{p}" for p in ("usr/bin/passwd", "usr/bin/ping", "dev/shm/.sh", "tmp/notes")
    }
    assert rows[f"{root}/dev/shm/.sh"]["sha256"] == hashlib.sha256(b"copy of a shell").hexdigest()
    privileged = json.loads((ctx.root / "artifacts/executables/privileged.json").read_bytes())
    by_path = {p["path"]: p for p in privileged}
    assert by_path[f"{root}/usr/bin/passwd"]["packaged"] is True
    assert by_path[f"{root}/dev/shm/.sh"]["packaged"] is False
    assert by_path[f"{root}/dev/shm/.sh"]["uid"] == os.getuid()
    if setcap:
        assert by_path[f"{root}/usr/bin/ping"]["capability"]
    findings = {
        (r["rule"], r["severity"], r["source"]["path"])
        for r in journal_records(ctx.root)
        if r.get("event") == "finding"
    }
    assert ("privileged-unpackaged", "HIGH", f"{root}/dev/shm/.sh") in findings
    assert ("executable-in-staging-dir", "MEDIUM", f"{root}/dev/shm/.sh") in findings
    assert not {f for f in findings if f[2].endswith("passwd") or f[2].endswith("notes")}
    assert [r for r in journal_records(ctx.root) if r["type"] == "artifact"][0]["path"] == (
        "artifacts/executables/sha256.jsonl"
    )


@pytest.mark.parametrize("count", [250])
def test_findings_past_the_cap_are_counted(ctx: CollectContext, tmp_path: Path, count: int) -> None:
    root = tmp_path / "host"
    (root / "tmp").mkdir(parents=True)
    for i in range(count):
        (root / f"tmp/x{i}").write_bytes(b"#!/bin/sh\n")
        os.chmod(root / f"tmp/x{i}", 0o755)
    ctx.options = Options(only=("executables",))
    collector = ExecutablesCollector()
    collector.root = os.fsencode(root)
    collector.collect(ctx)
    records = journal_records(ctx.root)
    assert len([r for r in records if r.get("event") == "finding"]) == 200
    (capped,) = [r for r in records if r.get("event") == "findings-capped"]
    assert capped["total"] == count
    assert ("Finding MEDIUM", f"executable-in-staging-dir ({count}, executables)") in list(
        ctx.summary
    )


def test_not_in_the_minimal_profile_it_does_not_run(ctx: CollectContext) -> None:
    ctx.options = Options(log_profile=load_profile("minimal"))  # the default, standard, runs it
    ExecutablesCollector().collect(ctx)
    assert not (ctx.root / "artifacts/executables").exists()
    assert [label for label, _ in ctx.summary] == ["Executables"]


def test_a_huge_sparse_staging_file_is_listed_not_hashed(
    ctx: CollectContext, tmp_path: Path
) -> None:
    """64 GiB of holes in /tmp (test runs leave such files; so can an intruder who wants
    the triage to stall): listed with its size, no digest, one skipped record; the small
    file beside it is hashed as usual."""
    from collectors.executables import STAGING_MAX_HASH

    root = tmp_path / "host"
    (root / "tmp").mkdir(parents=True)
    with open(root / "tmp/disk.img", "wb") as f:
        f.truncate(64 * 1024**3)
    (root / "tmp/tool").write_bytes(b"#!/bin/sh\n")
    rows = _listing(ctx, root)
    assert rows[f"{root}/tmp/disk.img"]["sha256"] is None
    assert rows[f"{root}/tmp/disk.img"]["size"] == 64 * 1024**3
    assert rows[f"{root}/tmp/tool"]["sha256"] == hashlib.sha256(b"#!/bin/sh\n").hexdigest()
    (skip,) = [r for r in journal_records(ctx.root) if r["type"] == "skipped"]
    assert skip["source"]["path"] == f"{root}/tmp/disk.img" and skip["cap"] == STAGING_MAX_HASH
