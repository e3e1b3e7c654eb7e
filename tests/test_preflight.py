"""The pre-flight block: said before anything is collected, and in --json."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import collect_json, preserve

from agent import preflight
from collectors.files import FilesCollector
from manifests import fstype

GiB = 1024**3


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"x" * 1000)
    (src / "sub" / "b.txt").write_bytes(b"y" * 24)
    os.symlink("/etc", src / "link")  # not followed
    subprocess.run(["truncate", "-s", "5G", str(src / "sparse.img")], check=True)
    return src


def test_scan_counts_files_sizes_and_holes(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    scan = preflight.scan_trees([os.fsencode(src), os.fsencode(src / "sub")])  # counted once
    assert scan.complete and scan.files == 3
    assert scan.bytes == 5 * GiB + 1024 and scan.allocated < 1024 * 1024
    assert scan.over_fat_limit == 1


def test_scan_out_of_time_says_at_least(tmp_path: Path) -> None:
    scan = preflight.scan_trees([os.fsencode(_tree(tmp_path))], seconds=-1)
    assert not scan.complete
    plan = _survey(tmp_path, fs=fstype.UNKNOWN, seconds=-1)
    assert plan.estimate.at_least


def _survey(tmp_path: Path, fs: fstype.FileSystem, **kw: Any) -> preflight.Preflight:
    files = FilesCollector()
    src = tmp_path / "src"
    if not src.exists():
        _tree(tmp_path)
    original = preflight._file_system
    preflight._file_system = lambda path: fs  # type: ignore[assignment]
    try:
        return preflight.survey(
            [files], None, [os.fsencode(src)], tmp_path / "out", kw.pop("isolation", None), **kw
        )
    finally:
        preflight._file_system = original  # type: ignore[assignment]


def test_fat32_output_warns_of_its_4_gib_limit_and_stores_holes_whole(tmp_path: Path) -> None:
    plan = _survey(tmp_path, fs=fstype._FAT32)
    assert any("FAT32" in w and "4.0 GiB" in w and "1 file to collect" in w for w in plan.warnings)
    assert plan.needed == plan.scan.bytes  # no holes on FAT32


def test_does_not_fit_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        preflight.shutil, "disk_usage", lambda p: SimpleNamespace(total=GiB, used=0, free=1024)
    )
    plan = _survey(tmp_path, fs=fstype._EXFAT)
    assert plan.fits is False
    assert any("does not fit" in w for w in plan.warnings)
    assert plan.to_json()["output"]["fits"] is False


def test_isolation_plan_is_shown(tmp_path: Path) -> None:
    isolation = SimpleNamespace(
        method=SimpleNamespace(name="nftables"),
        request=SimpleNamespace(stays_open=lambda: ["loopback", "10.0.0.5"]),
    )
    plan = _survey(tmp_path, fs=fstype.UNKNOWN, isolation=isolation)
    assert plan.to_json()["isolation"] == {
        "method": "nftables",
        "when": "after the volatile snapshot",
        "stays_open": ["loopback", "10.0.0.5"],
    }


def test_preflight_block_comes_before_collection(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    result = preserve("-o", tmp_path / "out", "--only", "files", "--path", src)
    assert result.returncode == 0, result.stderr.decode()
    err = result.stderr.decode()
    block = err[err.index("pre-flight (nothing collected yet):") : err.index("[1/")]
    assert "collecting  files" in block and str(src) in block
    assert "about 1 file, 5 B to read" in block and "free: fits" in block
    assert "running as" in block


def test_preflight_in_json(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src)
    pre = summary["preflight"]
    assert pre["collectors"] == ["files"] and pre["paths"] == [str(src)]
    assert pre["estimate"]["files"] == 1 and pre["estimate"]["bytes"] == 5
    assert pre["output"]["fits"] is True and pre["root"] == (os.geteuid() == 0)


def test_estimate_counts_what_the_log_profile_takes(tmp_path: Path) -> None:
    """A profile's include/exclude decide what the logs collector reads; the estimate
    counts the same files, not everything under the source's root."""
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / "app.log").write_bytes(b"a" * 100)
    (logs / "app.log.1").write_bytes(b"b" * 10)
    (logs / "old" / "core.dump").write_bytes(b"c" * 100_000)  # not in the profile
    (logs / "skip.log").write_bytes(b"d" * 50)  # excluded
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'version = 1\n[[source]]\ndescription = "app"\nroot = "{logs}"\n'
        'include = ["*.log*"]\nexclude = ["skip.log"]\n'
        f'[[source]]\ndescription = "again"\nroot = "{logs}"\ninclude = ["app.log"]\n'
    )
    summary = collect_json(tmp_path / "out", "--only", "logs", "--profile", profile)
    scan = summary["preflight"]["estimate"]
    assert (scan["files"], scan["bytes"]) == (2, 110), scan  # app.log counted once
    assert summary["counts"]["stored"] == 2


def test_process_memory_cap_is_shown_and_warned_of(tmp_path: Path) -> None:
    """Which processes get their memory copied is known only after the process snapshot,
    so the pre-flight names the run's cap, and warns when the cap would not fit."""
    out = tmp_path / "out"
    summary = collect_json(out, "--only", "procmem", "--process-memory", "3M")
    assert summary["preflight"]["estimate"]["process_memory_at_most"] == 4 * 3 * 1024**2
    shown = preserve("-o", out, "--only", "procmem", "--process-memory", "3M")
    err = shown.stderr.decode()
    assert "process memory  up to 12.0 MiB of flagged processes' memory" in err, err
    off = collect_json(tmp_path / "off", "--only", "procmem", "--process-memory", "off")
    assert off["preflight"]["estimate"]["process_memory_at_most"] == 0


def test_process_memory_that_may_not_fit_is_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collectors.procmem import ProcMemCollector

    monkeypatch.setattr(
        preflight.shutil, "disk_usage", lambda p: SimpleNamespace(total=GiB, used=0, free=GiB // 2)
    )
    memory = ProcMemCollector()
    plan = preflight.survey([memory], None, [], tmp_path, None, seconds=5)
    assert plan.fits and any("may not" in w and "1.0 GiB of process" in w for w in plan.warnings)
    memory.cap = 1024**2
    plan = preflight.survey([memory], None, [], tmp_path, None, seconds=5)
    assert not any("process memory" in w for w in plan.warnings), plan.warnings
