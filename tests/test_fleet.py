"""The fleet run for real: ``ansible-playbook packaging/ansible/preserve-fleet.yml``
against namespace "hosts" with read-only roots (tests/fleet_harness.py), evidence
streamed to the drop-box sshd, the summary on the controller, ``preserve fleet-summary``
on the server. One run serves most assertions (it takes a minute); the kit is built once
per session (tests/test_kit.py's fixture)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import preserve, verify
from fleet_harness import SUDO_USER, Fleet, FleetHost, ansible_available
from sftp_server import available
from test_kit import require_mount_namespaces

from agent.kitloader import KIT_SSH

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(available() is not None, reason=available() or ""),
    pytest.mark.skipif(ansible_available() is not None, reason=ansible_available() or ""),
]
SUDO = shutil.which("sudo") is not None  # tests/run.sh installs it
# sudo1 logs in as an unprivileged account and becomes root with sudo.
COLLECTED = ("web1", "web2", "db1", *(("sudo1",) if SUDO else ()))
NAMES = [*COLLECTED, "slow1", "disk1"]


@dataclass
class FleetRun:
    fleet: Fleet
    done: subprocess.CompletedProcess[bytes]
    summary: Path
    rows: dict[str, dict[str, str]]
    killed: list[int]


def _kill_when_streaming(fleet: Fleet, host: FleetHost, killed: list[int]) -> None:
    """SIGKILL the host's preserve once a few of its files are on the server."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        dirs = [d for d in fleet.server.evidence.glob(f"{host.name}-*") if d.is_dir()]
        if dirs and sum(1 for p in dirs[0].rglob("f*") if p.is_file()) >= 5:
            break
        time.sleep(0.05)
    else:
        return
    for pid in host.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # The kit's launcher execs its own loader: argv[0] is then KIT/_internal/glibc/ld-...
        is_kit = cmdline[0].endswith(b"/kit/preserve") or (
            b"/kit/_internal/" in cmdline[0] and b"ld-linux" in cmdline[0]
        )
        if is_kit and b"--json" in cmdline and b"-o" in cmdline:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)


@pytest.fixture(scope="module")
def run(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:  # noqa: F811
    require_mount_namespaces()
    tmp = tmp_path_factory.mktemp("fleet")
    big = tmp / "big"
    big.mkdir()
    for i in range(80):
        (big / f"f{i:02}").write_bytes(os.urandom(1_000_000))
    fleet = Fleet(tmp / "net", NAMES, sudo_hosts=("sudo1",))
    try:
        inventory = fleet.inventory(
            host_vars={
                "slow1": {"preserve_args": f"--only files --path {big}"},
                "disk1": {"preserve_memdir": "/var/tmp"},  # on the disk: refused
                **(
                    {"sudo1": {"ansible_user": SUDO_USER, "ansible_become": "true"}} if SUDO else {}
                ),
            },
            down=("gone1",),
            group_vars={"preserve_args": "--only system"},
        )
        summary = tmp / "fleet.csv"
        killed: list[int] = []
        watcher = threading.Thread(
            target=_kill_when_streaming, args=(fleet, fleet.host("slow1"), killed), daemon=True
        )
        watcher.start()
        done = fleet.run(inventory, fleet.extra_vars(kit, summary))
        watcher.join(5)
        rows = {}
        if summary.exists():
            rows = {r["host"]: r for r in csv.DictReader(summary.open())}
        yield FleetRun(fleet, done, summary, rows, killed)
    finally:
        fleet.close()


def _output(run: FleetRun) -> str:
    return (run.done.stdout + run.done.stderr).decode(errors="replace")[-6000:]


def test_every_host_has_a_row_and_the_run_reports_failure(run: FleetRun) -> None:
    assert run.done.returncode != 0, _output(run)  # two hosts were not collected in full
    assert set(run.rows) == {*NAMES, "gone1"}, _output(run)
    assert "not collected in full" in _output(run)
    table = run.summary.with_suffix(".md").read_text()
    assert table.startswith("| host | hostname | status |")
    assert len(table.splitlines()) == 2 + len(run.rows)


def test_each_host_evidence_arrives_and_verifies_pinned(run: FleetRun) -> None:
    for name in COLLECTED:
        row = run.rows[name]
        assert row["status"] == "collected" and row["exit_code"] == "0", row
        assert row["kit"] == "intact" and row["cleaned"] == "yes", row
        assert row["hostname"] == name
        evidence = run.fleet.server.evidence / row["evidence_dir"].rpartition("/")[2]
        assert evidence.name.startswith(f"{name}-")
        checked = verify(
            evidence, "--fingerprint", row["fingerprint"], "--chain-head", row["chain_head"]
        )
        assert checked.returncode == 0, checked.stdout.decode()
        start = json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])
        assert start["case"] == "IR-FLEET-1" and start["examiner"] == "Fleet Examiner"
        # Through the kit's own ssh (the host's /usr/bin/ssh may be the attacker's).
        assert start["sink"]["transport"] == "openssh", start["sink"]
        assert start["sink"]["ssh"] == KIT_SSH, start["sink"]


@pytest.mark.skipif(not SUDO, reason="sudo not installed (tests/run.sh installs it)")
def test_an_unprivileged_login_collects_as_root_through_become(run: FleetRun) -> None:
    """sudo1's sshd lets only the examiner account in; Ansible's sudo (NOPASSWD, that
    host's sudoers alone) runs every raw and script step as root, and still nothing
    of Ansible's lands on its read-only disk (it would fail the run)."""
    host = run.fleet.host("sudo1")
    log = host.log.read_text()
    assert f"Accepted publickey for {SUDO_USER}" in log and "for root" not in log, log
    row = run.rows["sudo1"]
    assert row["status"] == "collected" and row["cleaned"] == "yes", row
    evidence = run.fleet.server.evidence / row["evidence_dir"].rpartition("/")[2]
    start = json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])
    assert start["uid"] == 0 and start["euid"] == 0, start
    assert start["host"]["hostname"] == "sudo1", start["host"]
    who = subprocess.run(host.enter("id", "-u", SUDO_USER), capture_output=True)
    assert who.stdout.strip() != b"0"  # an account of its own, not root by another name
    machine = subprocess.run(["id", "-u", SUDO_USER], capture_output=True)
    assert machine.returncode != 0  # that account exists in sudo1's namespace only


def test_a_host_that_is_down_is_reported_not_fatal(run: FleetRun) -> None:
    row = run.rows["gone1"]
    assert row["status"] == "unreachable", row
    assert "ssh" in row["detail"] and row["detail"], row
    assert run.rows["web1"]["status"] == "collected"


def test_a_host_without_memory_file_system_is_not_sent_anything(run: FleetRun) -> None:
    """preserve_memdir on a disk: refused before Ansible's own transfer (whose temporary
    copy would land there), so the read-only root is never even tried."""
    row = run.rows["disk1"]
    assert row["status"] == "not run" and "not in memory" in row["detail"], row
    assert row["cleaned"] == "nothing unpacked", row
    out = _output(run)
    assert "Read-only file system" not in out, out


def test_sigkill_mid_stream_leaves_a_verifiable_prefix(run: FleetRun) -> None:
    assert run.killed, "slow1's preserve was never seen streaming"
    row = run.rows["slow1"]
    assert row["status"] == "killed" and row["evidence_dir"] == "", row
    assert row["cleaned"] == "yes", row  # the kit and the key are gone all the same
    (evidence,) = run.fleet.server.evidence.glob("slow1-*")
    report = json.loads(verify(evidence, "--json").stdout)
    assert report["sealed_through_seq"] is not None, report
    problems = report["files"]["problems"]
    assert problems and not [p for p in problems if p["status"] in ("changed", "unexpected")]


def test_fleet_summary_verifies_every_host_on_the_server(run: FleetRun) -> None:
    done = preserve("fleet-summary", run.summary, "--evidence", run.fleet.server.evidence)
    text = done.stdout.decode()
    assert done.returncode == 1, text  # slow1 killed, gone1 unreachable
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    for name in COLLECTED:
        assert "| intact (signer and chain head pinned) |" in lines[name], text
    assert "prefix intact: sealed through seq" in lines["slow1"], text
    assert "found on the server by its name" in lines["slow1"], text
    assert "no evidence (not collected)" in lines["gone1"], text
    assert "no evidence (not collected)" in lines["disk1"], text
    assert f"{len(COLLECTED)} of {len(NAMES) + 1} hosts collected and intact" in text
    as_json = json.loads(
        preserve(
            "fleet-summary", run.summary, "--evidence", run.fleet.server.evidence, "--json"
        ).stdout  # fmt: skip
    )
    assert [r["ok"] for r in as_json] == [True] * len(COLLECTED) + [False] * 3


def test_fleet_summary_catches_tampering_on_the_server(run: FleetRun, tmp_path: Path) -> None:
    """The row pins the chain head: evidence swapped for another host's fails."""
    rows = list(csv.DictReader(run.summary.open()))
    rows[0]["evidence_dir"], rows[1]["evidence_dir"] = (
        rows[1]["evidence_dir"],
        rows[0]["evidence_dir"],
    )
    swapped = tmp_path / "swapped.csv"
    with swapped.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    done = preserve("fleet-summary", swapped, "--evidence", run.fleet.server.evidence)
    assert done.returncode == 1
    failed = [line for line in done.stdout.decode().splitlines() if "FAILED verify" in line]
    assert len(failed) == 2 and all("mismatch" in line for line in failed), done.stdout


def test_nothing_left_on_the_hosts_and_their_roots_are_read_only(run: FleetRun) -> None:
    for name in NAMES:
        host = run.fleet.host(name)
        listing = subprocess.run(host.enter("ls", "-A", "/dev/shm"), capture_output=True)
        assert listing.returncode == 0 and listing.stdout == b"", (name, listing)
        probe = subprocess.run(host.enter("touch", "/root/.probe"), capture_output=True)
        assert probe.returncode != 0 and b"Read-only" in probe.stderr


def test_a_wrong_pinned_host_key_refuses(run: FleetRun, kit: Path) -> None:  # noqa: F811
    before = set(run.fleet.server.evidence.iterdir())
    extra = run.fleet.extra_vars(
        kit, Path("wrong-key.csv"), preserve_sink_host_key=run.fleet.server.wrong_fingerprint
    )
    summary = run.fleet.tmp / "wrong-key.csv"  # relative to where the playbook was started
    done = run.fleet.run(run.fleet.inventory(), {**extra, "preserve_hosts": "web1"})
    assert done.returncode != 0
    (row,) = csv.DictReader(summary.open())
    assert row["host"] == "web1" and row["status"] == "refused" and row["exit_code"] == "2"
    assert "not the pinned one" in row["detail"], row
    assert set(run.fleet.server.evidence.iterdir()) == before


def test_the_dropbox_denies_deletion_of_what_a_host_sent(run: FleetRun) -> None:
    server = run.fleet.server
    name = run.rows["web1"]["evidence_dir"].rpartition("/")[2]
    tried = server.sftp_batch(server.dropbox_key, f"rm /evidence/{name}/custody.jsonl\n")
    assert tried.returncode != 0
    assert (server.evidence / name / "custody.jsonl").exists()


def test_a_bad_setting_stops_the_run_before_any_host(
    run: FleetRun,
    kit: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An encrypted upload key: refused on the controller, no host touched."""
    key = tmp_path / "encrypted"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", key], check=True)
    before = set(run.fleet.server.evidence.iterdir())
    extra = run.fleet.extra_vars(kit, tmp_path / "s.csv", preserve_sink_key=str(key))
    done = run.fleet.run(run.fleet.inventory(), extra)
    out = (done.stdout + done.stderr).decode()
    assert done.returncode != 0 and "passphrase-protected" in out, out[-3000:]
    assert "Push the kit" not in out and not (tmp_path / "s.csv").exists()
    assert set(run.fleet.server.evidence.iterdir()) == before
