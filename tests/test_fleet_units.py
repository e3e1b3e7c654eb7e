"""The fleet run's controller-side pieces without a fleet: each way a host can fail
becomes the right summary row, and the kit bundle refuses what it must (an encrypted
upload key, a directory on disk or mounted noexec) before unpacking anything."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_kit import require_mount_namespaces

sys.path.insert(0, str(ROOT / "packaging" / "ansible" / "filter_plugins"))
sys.path.insert(0, str(ROOT / "packaging" / "ansible"))
import bundle  # noqa: E402
import preserve_fleet as pf  # noqa: E402

RUN = "20261201T120000Z-abcdef"
UNPACKED = {"rc": 0, "stdout": "unpacked into /dev/shm/x\nhostname: web1\n", "stderr": ""}
INTACT = {"rc": 0, "stdout": '{"ok": true}', "stderr": ""}
CLEANED = {"rc": 0, "stdout": "", "stderr": ""}
SUMMARY = '{"evidence_dir": "sftp://u@h:22/e/web1-X", "fingerprint": "f", "chain_head": "c"}'


def row(unpack=UNPACKED, check=INTACT, run=None, cleanup=CLEANED) -> dict:  # type: ignore[no-untyped-def]
    return pf.preserve_fleet_row("web1", RUN, unpack, check, run, cleanup)


def test_a_collected_host() -> None:
    r = row(run={"rc": 0, "stdout": SUMMARY, "stderr": ""})
    assert r["status"] == "collected" and r["hostname"] == "web1" and r["kit"] == "intact"
    assert (r["evidence_dir"], r["fingerprint"], r["chain_head"]) == (
        "sftp://u@h:22/e/web1-X",
        "f",
        "c",
    )
    assert r["cleaned"] == "yes" and r["run"] == RUN and r["detail"] == ""


@pytest.mark.parametrize(
    ("kwargs", "status", "detail"),
    [
        (
            {"unpack": {"unreachable": True, "msg": "ssh: connect: No route"}},
            "unreachable",
            "No route",
        ),
        (
            {"unpack": {"rc": 3, "stderr": "preserve-fleet: /dev/shm is on 'ext4'"}},
            "not run",
            "ext4",
        ),
        (
            {"check": {"rc": 1, "stdout": '{"problems": ["preserve: content differs"]}'}},
            "kit modified",
            "content differs",
        ),
        (
            {"run": {"rc": 2, "stdout": "", "stderr": "error: host key is not the pinned one\n"}},
            "refused",
            "pinned",
        ),
        ({"run": {"rc": 137, "stdout": "", "stderr": ""}}, "killed", "SIGKILL"),
        (
            {"run": {"rc": 1, "stdout": "", "stderr": "error: connection lost, chain head 00ff\n"}},
            "lost",
            "chain head",
        ),
        (
            {"run": {"rc": 1, "stdout": SUMMARY, "stderr": "warning: 2 items failed\n"}},
            "partial",
            "items failed",
        ),
        ({"run": {"unreachable": True, "msg": "Connection reset"}}, "unreachable", "reset"),
    ],
)
def test_each_failure_is_a_row_that_says_why(kwargs: dict, status: str, detail: str) -> None:
    if "run" not in kwargs:
        kwargs["run"] = {"rc": 0, "stdout": SUMMARY}
    r = row(**kwargs)
    assert r["status"] == status and detail in r["detail"], r


def test_a_lost_link_sealed_when_the_server_came_back_keeps_that_head() -> None:
    head = "ab" * 32
    stderr = (
        "error: the evidence directory sftp://u@h:22/e/web1-X was lost: the connection broke "
        "(TimeoutError); the server acknowledged the journal up to seq 17, chain head "
        f"{'cd' * 32}; it came back: what the server holds is sealed in "
        f"custody.continued.jsonl, up to seq 19, chain head {head}; run 'verify' ...\n"
    )
    r = row(run={"rc": 1, "stdout": "", "stderr": stderr})
    assert r["status"] == "lost" and r["chain_head"] == head, r
    assert r["evidence_dir"] == "sftp://u@h:22/e/web1-X"
    unsealed = row(run={"rc": 1, "stdout": "", "stderr": stderr.split("; it came")[0]})
    assert unsealed["chain_head"] == "" and unsealed["evidence_dir"] == "sftp://u@h:22/e/web1-X"


def test_hosts_without_a_row_and_the_csv() -> None:
    rows = pf.preserve_fleet_rows(
        [{"preserve_row": row(run={"rc": 0, "stdout": SUMMARY})}, {}], ["web1", "db1"]
    )
    assert [r["status"] for r in rows] == ["collected", "no result"]
    parsed = list(csv.DictReader(io.StringIO(pf.preserve_fleet_csv(rows))))
    assert list(parsed[0]) == list(pf.COLUMNS) and parsed[1]["host"] == "db1"
    table = pf.preserve_fleet_markdown([{**rows[0], "detail": "a|b"}])
    assert "a\\|b" in table and table.count("\n") == 3


def test_an_encrypted_upload_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", key], check=True)
    with pytest.raises(SystemExit):
        bundle.check_key(key)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "secret", "-N", "", "-f", key], check=True)
    assert b"PRIVATE KEY" in bundle.check_key(key)


def _bundle(tmp_path: Path) -> Path:
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "preserve").write_text("#!/bin/sh\necho kit\n")
    (kit / "preserve").chmod(0o755)
    return bundle.build(kit, b"-----BEGIN OPENSSH PRIVATE KEY-----\n", tmp_path)


def test_the_bundle_unpacks_only_into_memory(tmp_path: Path) -> None:
    """On a disk directory the header refuses before creating anything; on a tmpfs it
    unpacks the kit and the key (0600), and says the hostname."""
    path = _bundle(tmp_path)
    target = tmp_path / "disk" / "preserve-fleet-x"
    target.parent.mkdir()
    done = subprocess.run(["sh", path, target], capture_output=True)
    fs = subprocess.run(["stat", "-f", "-c", "%T", tmp_path], capture_output=True, text=True)
    if fs.stdout.strip() in ("tmpfs", "ramfs"):
        pytest.skip("the test's temporary directory is itself a tmpfs")
    assert done.returncode == 3 and b"not in memory" in done.stderr, done
    assert not target.exists()
    require_mount_namespaces()
    script = (
        f"mount -t tmpfs t {target.parent} && sh {path} {target.parent}/run"
        f" && stat -c %a {target.parent}/run/upload.key && {target.parent}/run/kit/preserve"
        f" && mount -o remount,noexec {target.parent} && sh {path} {target.parent}/run2"
    )
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True
    )
    out = done.stdout.decode()
    assert "hostname: " in out and "\n600\n" in out and "kit\n" in out, (out, done.stderr)
    assert done.returncode == 3 and b"noexec" in done.stderr
