"""Windows and macOS exporters cannot run here: their exact commands and the handling of
what the commands leave behind are tested with a stand-in runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import journal_records
from evidence_factory import new_writer

from collectors import _logs_macos, _logs_windows
from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine
from collectors.logprofile import parse_profile


class FakeRunner:
    """Plays the tool: records each argv and writes what the real command would."""

    def __init__(self, fail: set[str] = frozenset(), listing: bytes = b"") -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.listing = listing

    def __call__(self, argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        assert kw == {"capture_output": True, "timeout": 1800, "check": False}
        self.calls.append(argv)
        if argv[1] == "el":
            return subprocess.CompletedProcess(argv, 0, self.listing, b"")
        if argv[1] == "epl":
            if argv[2] in self.fail:
                return subprocess.CompletedProcess(argv, 15, b"", b"Access is denied.\r\n")
            Path(argv[3]).write_bytes(b"ElfFile\x00" + argv[2].encode())
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        if argv[1] == "collect":
            bundle = Path(argv[3])
            (bundle / "Persist").mkdir(parents=True)
            (bundle / "Info.plist").write_bytes(b"<plist/>")
            (bundle / "Persist" / "0000000000000001.tracev3").write_bytes(b"\x00" * 4096)
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        raise AssertionError(argv)


@pytest.fixture
def ctx(tmp_path: Path) -> CollectContext:
    writer = new_writer(tmp_path)
    journal = writer.journal
    engine = CopyEngine(writer)
    yield CollectContext(writer.root, journal, engine, Options(), log=None)
    engine.shutdown()
    journal.close()


def _profile(**windows: object) -> object:
    return parse_profile("t", {"version": 1, "windows": windows})


def test_wevtutil_exports_each_channel(ctx: CollectContext) -> None:
    run = FakeRunner()
    profile = _profile(channels=["Security", "Microsoft-Windows-PowerShell/Operational"])
    _logs_windows.collect(ctx, profile, run)
    root = str(ctx.root)
    assert run.calls == [
        ["wevtutil.exe", "epl", "Security",
         f"{root}/artifacts/logs/windows/Security.evtx", "/ow:false"],
        ["wevtutil.exe", "epl", "Microsoft-Windows-PowerShell/Operational",
         f"{root}/artifacts/logs/windows/Microsoft-Windows-PowerShell%4Operational.evtx",
         "/ow:false"],
    ]  # fmt: skip
    records = journal_records(ctx.root)
    artifacts = [r for r in records if r["type"] == "artifact"]
    assert [a["channel"] for a in artifacts] == [
        "Security",
        "Microsoft-Windows-PowerShell/Operational",
    ]
    assert artifacts[0]["size"] == len(b"ElfFile\x00Security")
    assert artifacts[0]["kind"] == "windows-event-log"
    assert (ctx.root / artifacts[0]["path"]).stat().st_mode & 0o777 == 0o444
    actions = [r for r in records if r["type"] == "action"]
    assert actions[0]["command"] == run.calls[0] and actions[0]["returncode"] == 0


def test_wevtutil_failure_and_channel_listing(ctx: CollectContext) -> None:
    run = FakeRunner(fail={"System"}, listing=b"Application\r\nSystem\r\n\r\nSecurity\r\n")
    _logs_windows.collect(ctx, _profile(channels=["Security"], all_channels=True), run)
    assert run.calls[0] == ["wevtutil.exe", "el"]
    assert [c[2] for c in run.calls[1:]] == ["Security", "Application", "System"]
    records = journal_records(ctx.root)
    errors = [r for r in records if r["type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["channel"] == "System"
    assert errors[0]["reason"] == ("wevtutil.exe epl System failed (exit 15): Access is denied.")
    assert sorted(r["channel"] for r in records if r["type"] == "artifact") == [
        "Application",
        "Security",
    ]
    assert ctx.engine.counters.failed == 1


def test_wevtutil_missing_is_an_error_not_a_crash(ctx: CollectContext) -> None:
    def missing(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        raise FileNotFoundError(argv[0])

    _logs_windows.collect(ctx, _profile(channels=["System"]), missing)
    errors = [r for r in journal_records(ctx.root) if r["type"] == "error"]
    assert errors[0]["reason"].startswith("wevtutil.exe not found")


def test_log_collect_bundle_is_journalled_file_by_file(ctx: CollectContext) -> None:
    run = FakeRunner()
    profile = parse_profile("t", {"version": 1, "macos": {"unified_log": True, "last": "3d"}})
    _logs_macos.collect(ctx, profile, run)
    bundle = f"{ctx.root}/artifacts/logs/macos/system_logs.logarchive"
    assert run.calls == [["/usr/bin/log", "collect", "--output", bundle, "--last", "3d"]]
    artifacts = {r["path"]: r for r in journal_records(ctx.root) if r["type"] == "artifact"}
    prefix = "artifacts/logs/macos/system_logs.logarchive/"
    assert set(artifacts) == {prefix + "Info.plist", prefix + "Persist/0000000000000001.tracev3"}
    assert all(a["kind"] == "macos-unified-log" for a in artifacts.values())


def test_log_collect_failure_is_reported(ctx: CollectContext) -> None:
    def denied(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 1, b"", b"log: Must be admin to run 'collect'\n")

    profile = parse_profile("t", {"version": 1, "macos": {"unified_log": True}})
    _logs_macos.collect(ctx, profile, denied)
    errors = [r for r in journal_records(ctx.root) if r["type"] == "error"]
    assert errors[0]["reason"] == (
        "log collect failed (exit 1): log: Must be admin to run 'collect'; run as root"
    )
    assert _logs_macos.collect_argv("/x", None) == ["/usr/bin/log", "collect", "--output", "/x"]
