"""``preserve --isolate`` with nftables, in real network namespaces, checked with traffic."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PRESERVE_ARGV, ROOT, journal_records, preserve, requires_root, verify
from netns_topology import Topology

pytestmark = requires_root

ACCEPT_ALL = """
table inet wide_open {
    chain input { type filter hook input priority -400; policy accept; accept; }
    chain output { type filter hook output priority -400; policy accept; accept; }
    chain forward { type filter hook forward priority -400; policy accept; accept; }
}
"""


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("evidence\n")
    return src


def _startup_ms(net: Topology) -> float:
    """The median wall time, now, of starting Python in the host namespace and importing
    the CLI: what the machine's load does to the part of a run that precedes the cut."""
    times = []
    for _ in range(3):
        began = time.monotonic()
        net.ex("host", PRESERVE_ARGV[0], "-c", "import agent.commands.group")
        times.append((time.monotonic() - began) * 1000)
    return sorted(times)[1]


def _isolate(
    net: Topology,
    tmp_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    only: str = "files",
):
    done, took = net.preserve(
        "--json", "-o", str(tmp_path / "out"), "--only", only, "--path", str(_src(tmp_path)),
        "--isolate", *extra, env=env,
    )  # fmt: skip
    assert done.returncode in (0, 4), done.stderr.decode()
    return done, json.loads(done.stdout), took


def test_isolate_keeps_responder_cuts_everything_else_and_release_restores(
    net: Topology, tmp_path: Path
) -> None:
    net.ex("host", "nft", "-f", "-", input=ACCEPT_ALL.encode())  # must not reopen anything
    before = net.ruleset()
    held = net.hold("other", "10.231.2.1")
    assert net.poke(held)
    assert net.can("other", "10.231.3.2")  # forwarded through host, before the cut
    assert net.can("other", "fd00:231:3::2")

    reference_ms = _startup_ms(net)
    done, summary, took = _isolate(
        net, tmp_path, "--allow", "10.231.1.2", "--allow", "[fd00:231:1::2]",
        only="processes,network,files",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    iso = summary["isolation"]
    assert iso["status"] == "in-force" and iso["method"] == "nftables"
    # Two seconds on a quiet machine; on a loaded one, within three bare start-ups of the
    # CLI measured just before (the cut follows start-up, the key and the pre-flight).
    assert iso["cut_after_ms"] < max(2000, 3 * reference_ms), (iso["cut_after_ms"], reference_ms)
    assert took < 10 + 5 * reference_ms / 1000
    assert all(p["outcome"] == "blocked-locally" for p in iso["probes"]) and iso["probes"]
    assert "loopback" in iso["stays_open"]

    for fam_addr in ("10.231.1.1", "fd00:231:1::1"):
        assert net.can("resp", fam_addr), fam_addr
        assert net.can("resp", fam_addr, "udp"), fam_addr
    for fam_addr in ("10.231.2.1", "fd00:231:2::1"):
        assert not net.can("other", fam_addr), fam_addr
        assert not net.can("other", fam_addr, "udp"), fam_addr
    assert not net.poke(held)  # the intruder's live session stops passing data
    assert net.can("host", "127.0.0.1") and net.can("host", "::1")
    assert not net.can("other", "10.231.3.2")  # forwarded traffic dropped
    assert not net.can("other", "fd00:231:3::2")
    assert not net.can("host", "10.231.2.2", timeout=0.5)  # and nothing goes out

    evidence = Path(summary["evidence_dir"])
    records = journal_records(evidence)
    # Order: the volatile snapshot (with the intruder's live connection) is sealed first.
    sockets = (evidence / "artifacts/volatile/sockets.jsonl").read_text()
    assert "10.231.2.2" in sockets
    seals = [r["reason"] for r in records if r["type"] == "seal"]
    assert seals.index("after stage volatile") < seals.index("after isolation")
    isolation = [r for r in records if str(r.get("action", "")).startswith("isolation-")]
    first_action = isolation[0]["seq"]
    snapshot = next(r for r in records if r.get("path", "").endswith("sockets.jsonl"))
    assert snapshot["seq"] < first_action
    actions = isolation
    kinds = [a["action"] for a in actions]
    assert (
        kinds[0] == "isolation-before-state" and "wide_open" in actions[0]["state"]["nft_ruleset"]
    )
    plan = next(a for a in actions if a["action"] == "isolation-plan")
    assert [e["network"] for e in plan["allow"]] == ["10.231.1.2/32", "fd00:231:1::2/128"]
    command = next(a for a in actions if a["action"] == "isolation-command")
    # Run from the system directories, never through PATH: the journal has the real path.
    assert command["argv"][0] in ("/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft")
    assert command["argv"][1:] == ["-f", "-"] and command["exit_code"] == 0
    assert "policy drop" in command["stdin"] and command["started"].endswith("Z")
    applied = next(a for a in actions if a["action"] == "isolation-applied")
    assert applied["release_plan"] == [
        {"argv": ["nft", "delete", "table", "inet", "preserve_isolation"]}
    ]
    assert next(a for a in actions if a["action"] == "isolation-verify")["confirmed"] is True
    assert verify(evidence).returncode == 0
    # The report (issue 7) reads these records: one isolation finding, in force, verified.
    report = preserve("report", "--format", "json", evidence)
    assert report.returncode == 0, report.stderr.decode()
    finding = next(f for f in json.loads(report.stdout)["findings"] if f["category"] == "isolation")
    assert finding["title"] == "network isolation in force, verified"

    # Re-running is idempotent: still one table, still in force.
    again, summary2, _ = _isolate(net, tmp_path / "second", "--allow", "10.231.1.2")
    assert summary2["isolation"]["status"] == "in-force"
    assert net.ruleset().count("table inet preserve_isolation") == 1

    # A second shell: release finds the isolation in force from the kit's saved state.
    rel, _ = net.preserve("release", "-o", str(tmp_path / "out"))
    assert rel.returncode == 0, rel.stderr.decode()
    rel2, _ = net.preserve("release", "-o", str(tmp_path / "second" / "out"))
    assert net.ruleset() == before
    assert net.can("other", "10.231.2.1") and net.can("other", "fd00:231:2::1", "udp")
    assert net.can("other", "10.231.3.2") and net.can("other", "fd00:231:3::2")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short path: nft keeps 128 characters of comment, where the state path goes."""
    path = Path(tempfile.mkdtemp(prefix="pv5-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_ssh_connection_keeps_the_responder_without_allow(net: Topology, short_tmp: Path) -> None:
    tmp_path = short_tmp
    env = {"SSH_CONNECTION": f"10.231.1.2 50022 10.231.1.1 {7000}"}
    done, summary, _ = _isolate(net, tmp_path, env=env)
    assert summary["isolation"]["status"] == "in-force"
    assert any("SSH_CONNECTION" in s for s in summary["isolation"]["stays_open"])
    assert net.can("resp", "10.231.1.1")  # the SSH port stays open to the SSH peer
    assert not net.can("resp", "10.231.1.1", "udp", port=7005, timeout=0.5)
    assert not net.can("other", "10.231.2.1")
    # A bare 'preserve release' finds the saved state through the table's comment.
    rel, _ = net.preserve("release")
    assert rel.returncode == 0 and str(tmp_path / "out") in rel.stdout.decode()
    state = json.loads(next((tmp_path / "out" / ".preserve-isolation").glob("*.json")).read_text())
    assert state["status"] == "released" and state["release_results"][0]["exit_code"] == 0
    assert net.can("other", "10.231.2.1")

    # --no-keep-ssh turns it off.
    done, summary, _ = _isolate(net, tmp_path / "b", "--no-keep-ssh", env=env)
    assert not net.can("resp", "10.231.1.1")
    net.preserve("release", "-o", str(tmp_path / "b" / "out"))
    assert net.can("resp", "10.231.1.1")


def test_allow_dns_opens_only_replies_from_port_53(net: Topology, tmp_path: Path) -> None:
    net.start_server("resp", 7005)  # TCP 7005
    net.start_server("resp", 7004)  # UDP 7005
    done, summary, _ = _isolate(net, tmp_path, "--allow-dns", "--allow", "10.231.1.2:7005")
    assert summary["isolation"]["status"] == "in-force"
    assert any("DNS" in s for s in summary["isolation"]["stays_open"])
    # A packet that merely comes FROM port 53 (or from an allowlisted peer's port) is not
    # a reply to anything this host asked: it must not reach a local service.
    assert not net.can("other", "10.231.2.1", "udp", source_port=53, timeout=0.5)
    assert not net.can("other", "10.231.2.1", source_port=53, timeout=0.5)
    assert not net.can("resp", "10.231.1.1", source_port=7005, timeout=0.5)
    assert net.can("host", "10.231.1.2", port=7005)  # but real replies from it pass
    assert net.can("host", "10.231.1.2", "udp", port=7004)  # can() adds 1 for UDP
    net.preserve("release", "-o", str(tmp_path / "out"))
    assert net.can("other", "10.231.2.1", "udp", source_port=53)


def test_dry_run_changes_and_collects_nothing(net: Topology, tmp_path: Path) -> None:
    before = net.ruleset()
    done, _ = net.preserve(
        "--isolate", "--dry-run", "--allow", "10.231.1.2:22", "-o", str(tmp_path / "out")
    )
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    assert "nft -f - <<'EOF'" in text and "10.231.1.2/32 . 22" in text
    assert "nft delete table inet preserve_isolation" in text and "syntax check" in text
    assert net.ruleset() == before
    assert not (tmp_path / "out").exists()
    assert net.can("other", "10.231.2.1")


def test_unconfirmed_cut_exits_4_and_still_collects(net: Topology, tmp_path: Path) -> None:
    # A probe target that is allowlisted cannot be blocked: the cut is not confirmed.
    done, summary, _ = _isolate(
        net, tmp_path, "--allow", "10.231.1.2", "--probe", "10.231.1.2:7000"
    )
    assert done.returncode == 4
    assert summary["isolation"]["status"] == "not-confirmed"
    assert summary["counts"]["stored"] >= 1 and summary["status"] == "complete"
    net.preserve("release", "-o", str(tmp_path / "out"))


def test_release_appends_to_the_evidence_journal(net: Topology, tmp_path: Path) -> None:
    done, summary, _ = _isolate(net, tmp_path, "--allow", "10.231.1.2")
    evidence = Path(summary["evidence_dir"])
    keys = tmp_path / "keys"
    kg, _ = net.preserve("keygen", "--out", str(keys), "--no-passphrase")
    assert kg.returncode == 0, kg.stderr.decode()
    rel, _ = net.preserve("release", "--evidence", str(evidence), "--key", str(keys / "signer.key"))
    assert rel.returncode == 0, rel.stderr.decode()
    records = journal_records(evidence)
    tail = [r.get("action") or r["type"] for r in records[-4:]]
    assert "isolation-released" in tail and records[-1]["type"] == "seal"
    assert verify(evidence).returncode == 0, verify(evidence).stdout.decode()
    assert "preserve_isolation" not in net.ruleset()
    state = json.loads(next((tmp_path / "out" / ".preserve-isolation").glob("*.json")).read_text())
    assert state["status"] == "released"


def test_a_full_drive_in_the_volatile_stage_still_cuts_the_network(
    net: Topology, tmp_path: Path
) -> None:
    """The kit's drive filling up ends the collection, never the isolation: the host is
    cut all the same (exit 1, sealed), and the state to release it is saved."""
    small = tmp_path / "small"
    small.mkdir()
    argv = " ".join(f"'{a}'" for a in PRESERVE_ARGV)
    script = (
        f"mount -t tmpfs -o size=2m tmpfs '{small}' || exit 99; "
        f"exec {argv} --json -o '{small}/out' --only processes,network "
        "--isolate --allow 10.231.1.2"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", net.ns["host"], "unshare", "-m", "--propagation", "private"]
        + ["sh", "-c", script],
        capture_output=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    if done.returncode == 99:
        pytest.skip(f"cannot mount here: {done.stderr.decode().strip()}")
    summary = json.loads(done.stdout)
    assert summary["status"] == "stopped: output disk full", done.stderr.decode()
    assert summary["isolation"]["status"] == "in-force", summary["isolation"]
    assert not net.can("other", "10.231.2.1")
    assert done.returncode == 1
    net.ex("host", "nft", "delete", "table", "inet", "preserve_isolation", check=False)
