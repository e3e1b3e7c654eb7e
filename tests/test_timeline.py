"""The timeline collector: a bodyfile that ``mactime -b`` reads, one stat per file, one
artifact and one journal record however many files, hostile names kept to one line, and
mounts of pseudo and network file systems not entered but recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import journal_records

from collectors.context import CollectContext, Options
from collectors.logprofile import load_profile
from collectors.timeline import TimelineCollector, body_name, mode_string, plan


def _run(ctx: CollectContext, top: Path) -> list[str]:
    ctx.options = Options(only=("timeline",))
    collector = TimelineCollector()
    collector.top = os.fsencode(top)
    collector.collect(ctx)
    ctx.engine.drain()
    return (ctx.root / "artifacts/timeline/bodyfile.txt").read_text().splitlines()


def test_bodyfile_lists_every_entry_once_with_its_times(
    ctx: CollectContext, tmp_path: Path
) -> None:
    top = tmp_path / "host"
    (top / "etc/cron.d").mkdir(parents=True)
    implant = top / "etc/cron.d/implant"
    implant.write_text("* * * * * root /dev/shm/.x\n")
    os.utime(implant, ns=(1_700_000_000_000_000_000, 1_690_000_000_000_000_000))
    (top / "link").symlink_to("/etc/shadow")
    hostile = top / os.fsdecode(b"a|b\nc\xff")
    hostile.write_bytes(b"")
    lines = _run(ctx, top)
    by_name = {line.split("|")[1]: line.split("|") for line in lines}
    assert len(lines) == 6  # top, etc, cron.d, implant, link, the hostile name
    row = by_name[f"{top}/etc/cron.d/implant"]
    assert row[0] == "0" and row[3] == "r/rrw-r--r--"
    assert (row[7], row[8]) == ("1700000000", "1690000000")
    assert int(row[6]) == implant.stat().st_size and int(row[2]) == implant.stat().st_ino
    assert by_name[f"{top}/link"][3].startswith("l/l")  # the link itself, not /etc/shadow
    assert by_name[f"{top}/etc"][3] == "d/drwxr-xr-x"
    assert f"{top}/a\\x7cb\\x0ac\\xff" in by_name
    assert all(len(line.split("|")) == 11 for line in lines)
    artifacts = [r for r in journal_records(ctx.root) if r.get("collector") == "timeline"]
    assert [r["type"] for r in artifacts if r["type"] == "artifact"] == ["artifact"]
    (event,) = [r for r in artifacts if r.get("event") == "timeline"]
    assert event["entries"] == 5 and event["errors"] == 0
    # which lister wrote the lines is on record (the C one wherever it was built)
    assert event["lister"] == ("c" if shutil.which("gcc") else "python")


@pytest.mark.skipif(shutil.which("mactime") is None, reason="sleuthkit not installed")
def test_mactime_reads_the_bodyfile(ctx: CollectContext, tmp_path: Path) -> None:
    top = tmp_path / "host"
    top.mkdir()
    (top / "payload").write_bytes(b"x" * 10)
    os.utime(top / "payload", (1_600_000_000, 1_600_000_000))
    _run(ctx, top)
    body = ctx.root / "artifacts/timeline/bodyfile.txt"
    out = subprocess.run(
        ["mactime", "-b", str(body), "-z", "UTC", "-d"], capture_output=True, text=True, check=True
    )
    assert "Sep 13 2020" in out.stdout and f"{top}/payload" in out.stdout


def test_not_in_the_profile_it_does_not_walk(ctx: CollectContext) -> None:
    ctx.options = Options(log_profile=load_profile("minimal"))
    TimelineCollector().collect(ctx)
    assert not (ctx.root / "artifacts/timeline").exists()
    assert list(ctx.summary) == [("Timeline", "not in profile minimal (--profile standard)")]


def test_the_default_run_reads_the_whole_host_and_minimal_does_not() -> None:
    whole_host = ("timeline", "packages", "executables")
    for name in (None, "standard", "full"):
        triage = load_profile(name).triage
        assert all(getattr(triage, key) for key in whole_host), name
    assert not any(getattr(load_profile("minimal").triage, key) for key in whole_host)


def test_plan_skips_pseudo_network_and_second_mounts(tmp_path: Path) -> None:
    rows = [
        {"mountpoint": "/", "fstype": "ext4", "dev": "254:0"},
        {"mountpoint": "/proc", "fstype": "proc", "dev": "0:21"},
        {"mountpoint": "/proc/sys/fs/binfmt_misc", "fstype": "binfmt_misc", "dev": "0:40"},
        {"mountpoint": "/dev/shm", "fstype": "tmpfs", "dev": "0:23"},
        {"mountpoint": "/srv/nfs", "fstype": "nfs4", "dev": "0:50"},
        {"mountpoint": str(tmp_path), "fstype": "ext4", "dev": "254:0"},
        {"mountpoint": "/var/lib/docker/overlay2/x/merged", "fstype": "overlay", "dev": "0:60"},
    ]
    p = plan(rows)
    assert p.skip_devs == {os.makedev(0, 21), os.makedev(0, 50), os.makedev(0, 60)}
    st = tmp_path.stat()
    assert p.skip_dirs == {(st.st_dev, st.st_ino)}
    reasons = {point: why for point, _, why in p.skipped}
    assert "/dev/shm" not in reasons and "/" not in reasons
    assert reasons["/proc/sys/fs/binfmt_misc"].startswith("inside")
    assert reasons[str(tmp_path)].startswith("another mount")


def test_mode_and_name_escaping() -> None:
    assert mode_string(0o104755) == "r/rrwsr-xr-x"
    assert mode_string(0o041777) == "d/drwxrwxrwt"
    assert body_name(b"/x\\y") == "/x\\x5cy"


def test_a_stream_that_fails_is_not_journaled(ctx: CollectContext) -> None:
    with pytest.raises(RuntimeError), ctx.engine.open_stream("artifacts/x/p", "timeline") as out:
        out.write(b"half")
        raise RuntimeError("the walk broke")
    assert not [p for p in (ctx.root / "artifacts").rglob("*") if p.is_file()]  # dirs go at close
    assert not [r for r in journal_records(ctx.root) if r["type"] == "artifact"]
