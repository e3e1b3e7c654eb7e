"""``preserve release`` twice, and recording into the evidence by default, in real
network namespaces (never the machine's own network)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import journal_records, preserve, requires_root, verify
from netns_topology import Topology

pytestmark = requires_root


def _isolate(net: Topology, tmp_path: Path) -> dict:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("evidence\n")
    done, _ = net.preserve(
        "--json", "-o", str(tmp_path / "out"), "--only", "files", "--path", str(src),
        "--isolate", "--allow", "10.231.1.2",
    )  # fmt: skip
    assert done.returncode in (0, 4), done.stderr.decode()
    return json.loads(done.stdout)


def test_release_twice_says_already_released(net: Topology, tmp_path: Path) -> None:
    _isolate(net, tmp_path)
    first, _ = net.preserve("release", "-o", str(tmp_path / "out"))
    assert first.returncode == 0, first.stderr.decode()
    assert b"not recorded in the evidence: give --key" in first.stderr
    second, _ = net.preserve("release", "-o", str(tmp_path / "out"))
    assert second.returncode == 0, second.stderr.decode()
    state = json.loads(next((tmp_path / "out" / ".preserve-isolation").glob("*.json")).read_text())
    assert second.stdout.decode().startswith(f"already released at {state['released']} ")
    as_json, _ = net.preserve("release", "-o", str(tmp_path / "out"), "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["already_released"] == state["released"]
    state_file = next((tmp_path / "out" / ".preserve-isolation").glob("*.json"))
    by_state, _ = net.preserve("release", "--state", str(state_file))
    assert by_state.returncode == 0 and b"already released at" in by_state.stdout


def test_release_with_a_key_records_into_the_evidence_by_default(
    net: Topology, tmp_path: Path
) -> None:
    summary = _isolate(net, tmp_path)
    evidence = Path(summary["evidence_dir"])
    before = json.loads(preserve("report", evidence, "--format", "json").stdout)
    assert before["isolation"]["released_text"] == "released: not recorded in this evidence"
    assert "its release is not recorded in this evidence" in " ".join(before["summary"])
    keys = tmp_path / "keys"
    kg, _ = net.preserve("keygen", "-o", str(keys), "--no-passphrase")
    assert kg.returncode == 0, kg.stderr.decode()
    rel, _ = net.preserve("release", "-o", str(tmp_path / "out"), "--key", str(keys / "signer.key"))
    assert rel.returncode == 0, rel.stderr.decode()
    assert f"recorded in the evidence: {evidence}".encode() in rel.stdout
    records = journal_records(evidence)
    assert any(r.get("action") == "isolation-released" for r in records[-4:])
    assert records[-1]["type"] == "seal"
    assert verify(evidence).returncode == 0, verify(evidence).stdout.decode()
    assert "preserve_isolation" not in net.ruleset()
    after = json.loads(preserve("report", evidence, "--format", "json").stdout)
    released = next(r for r in records if r.get("action") == "isolation-released")
    assert after["isolation"]["released_at"] == released["time"]
    assert after["isolation"]["released_text"].startswith(f"released at {released['time']}")
    assert "and released at" in " ".join(after["summary"])
    md = preserve("report", evidence).stdout.decode()
    assert f"released at {released['time']}" in md
