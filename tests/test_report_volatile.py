"""Report findings from the volatile collectors (issue 3: ``processes``, ``network``,
``system``), made from a real collection with planted suspects: a process whose
executable was deleted, a backdoor listening on loopback, and a connection to a
non-loopback address. Skipped, with the reason, where those collectors are not installed."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import psutil
import pytest
from conftest import collect_json, journal_records, preserve
from report_helpers import utmp_record

REGISTERED = {e.name for e in entry_points(group="preserve.collectors")}
pytestmark = pytest.mark.skipif(
    not {"processes", "network", "system"} <= REGISTERED,
    reason="the volatile collectors (issue 3: processes, network, system) are not registered",
)

LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
a = socket.socket(); a.bind(("0.0.0.0", 0)); a.listen()
print(s.getsockname()[1], a.getsockname()[1], flush=True)
conns = []
deadline = time.time() + 120
while time.time() < deadline:
    a.settimeout(0.5)
    try:
        conns.append(a.accept())
    except OSError:
        pass
"""


def _own_address() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


@pytest.fixture
def suspects(tmp_path: Path) -> Iterator[dict]:
    implant = tmp_path / "implant"
    shutil.copy("/bin/sleep", implant)
    proc = subprocess.Popen([implant, "120"])
    implant.unlink()
    backdoor = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    client = None
    try:
        loop_port, any_port = map(int, backdoor.stdout.readline().split())  # type: ignore[union-attr]
        address = _own_address()
        if address:
            client = socket.create_connection((address, any_port), timeout=5)
        yield {
            "implant": proc.pid,
            "backdoor": backdoor.pid,
            "port": loop_port,
            "remote": address,
            "remote_port": any_port,
        }
    finally:
        if client:
            client.close()
        for p in (proc, backdoor):
            p.kill()
            p.wait(timeout=10)


def test_findings_from_volatile_state_link_their_records(suspects: dict, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "wtmp").write_bytes(utmp_record("mallory", "203.0.113.9", "203.0.113.9", 1795728000))
    summary = collect_json(
        tmp_path / "out",
        "--only",
        "processes,network,system,files",
        "--path",
        logs,
        expect=(0, 1),
    )
    ev = Path(summary["evidence_dir"])
    seqs = {r["path"]: r["seq"] for r in journal_records(ev) if r["type"] == "artifact"}
    result = preserve("report", ev, "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    findings = data["findings"]

    implant = next(
        f
        for f in findings
        if f["category"] == "processes"
        and any(suspects["implant"] in (r.get("pids") or []) for r in f["refs"])
    )
    assert implant["severity"] == "high" and "deleted" in implant["title"]
    refs = {r["artifact"]: r["seq"] for r in implant["refs"]}
    assert refs["artifacts/volatile/processes.jsonl"] == seqs["artifacts/volatile/processes.jsonl"]
    copy = next(p for p in refs if "/deleted-exe/" in p)
    assert refs[copy] == seqs[copy]

    listen = next(
        f
        for f in findings
        if f["category"] == "listening" and f"127.0.0.1:{suspects['port']} " in f["title"]
    )
    assert f"pid {suspects['backdoor']}" in listen["title"]
    assert listen["refs"][0]["seq"] == seqs[listen["refs"][0]["artifact"]]
    assert "loopback only" in listen["details"][0]

    if suspects["remote"]:
        conn = next(
            f
            for f in findings
            if f["category"] == "connections" and f" to {suspects['remote']} " in f["title"]
        )
        assert str(suspects["remote_port"]) in conn["title"]
        assert conn["refs"][0]["seq"] == seqs[conn["refs"][0]["artifact"]]

    host = data["host"]
    assert host["os"] and host["boot_time"] and host["addresses"]
    assert host["not_collected"] == []
    assert any(s["lport"] == suspects["port"] for s in host["listening"])
    assert "processes" not in data["not_assessed"]
    started = [
        e
        for e in data["timeline"]["events"]
        if e["text"].startswith(f"pid {suspects['implant']} started")
    ]
    assert started and started[0]["notable"]

    md = preserve("report", ev, "--format", "md").stdout.decode()
    assert f"pid {suspects['implant']} (implant)" in md

    body = preserve("export", ev, "--format", "bodyfile").stdout.decode()
    assert f"implant (deleted) (via /proc/{suspects['implant']}/exe)|" in body
