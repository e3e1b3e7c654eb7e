"""The iptables fallback, the link-down hard cut and the --watch re-check, in namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import PRESERVE_ARGV, ROOT, journal_records, requires_root
from netns_topology import Topology

pytestmark = requires_root


def _isolate(net: Topology, tmp_path: Path, *extra: str):
    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("evidence\n")
    done, took = net.preserve(
        "--json", "-o", str(tmp_path / "out"), "--only", "files", "--path", str(src),
        "--isolate", *extra,
    )  # fmt: skip
    assert done.returncode in (0, 4), done.stderr.decode()
    return done, json.loads(done.stdout)


def _iptables_state(net: Topology) -> str:
    return (
        net.ex("host", "iptables", "-S").stdout.decode()
        + net.ex("host", "ip6tables", "-S").stdout.decode()
    )


def test_iptables_fallback(net: Topology, tmp_path: Path) -> None:
    net.ex("host", "iptables", "-A", "INPUT", "-s", "10.231.2.0/24", "-j", "ACCEPT")
    before = _iptables_state(net)
    held = net.hold("other", "10.231.2.1")
    done, summary = _isolate(
        net, tmp_path, "--isolation-method", "iptables", "--allow", "10.231.1.2",
        "--allow", "fd00:231:1::2", "--allow-dns",
    )  # fmt: skip
    assert done.returncode == 0 and summary["isolation"]["status"] == "in-force"
    assert net.can("resp", "10.231.1.1") and net.can("resp", "fd00:231:1::1", "udp")
    for addr in ("10.231.2.1", "fd00:231:2::1"):
        assert not net.can("other", addr) and not net.can("other", addr, "udp")
    assert not net.poke(held)
    assert not net.can("other", "10.231.2.1", "udp", source_port=53, timeout=0.5)
    assert net.can("host", "127.0.0.1") and net.can("host", "::1")
    assert not net.can("other", "10.231.3.2")  # forwarded
    # A second run replaces the cut instead of stacking a second set of jumps.
    again, summary2 = _isolate(net, tmp_path / "again", "--isolation-method", "iptables")
    assert summary2["isolation"]["status"] == "in-force"
    assert net.ex("host", "iptables", "-S", "INPUT").stdout.count(b"-j preserve-in") == 1
    assert not net.can("resp", "10.231.1.1", timeout=0.5)  # the new allowlist is empty
    # A bare 'preserve release' finds the state through the comment in preserve-in.
    rel, _ = net.preserve("release")
    assert rel.returncode == 0, rel.stderr.decode()
    assert str(tmp_path / "again" / "out") in rel.stdout.decode()
    assert _iptables_state(net) == before
    assert net.can("other", "10.231.2.1") and net.can("other", "fd00:231:2::1")


def _links(net: Topology) -> tuple[set, set]:
    addrs = json.loads(net.ex("host", "ip", "-j", "addr").stdout)
    routes = json.loads(net.ex("host", "ip", "-j", "-4", "route").stdout) + json.loads(
        net.ex("host", "ip", "-j", "-6", "route").stdout
    )
    a = {
        (link["ifname"], "UP" in link["flags"], i["local"], i["prefixlen"])
        for link in addrs
        for i in link.get("addr_info", [])
    }
    r = {(x.get("dst"), x.get("gateway"), x.get("dev")) for x in routes}
    return a, r


def test_link_down_and_release_restores_links_addresses_routes(
    net: Topology, tmp_path: Path
) -> None:
    net.ex("host", "ip", "route", "add", "10.99.0.0/16", "via", "10.231.1.2")
    before = _links(net)
    done, summary = _isolate(net, tmp_path, "--isolation-method", "link-down")
    assert done.returncode == 0, done.stderr.decode()
    assert summary["isolation"]["status"] == "in-force"
    assert all(p["outcome"] == "no-route" for p in summary["isolation"]["probes"])
    assert not net.can("resp", "10.231.1.1", timeout=0.5)  # it cuts the responder too
    assert not net.can("other", "10.231.2.1", timeout=0.5)
    assert net.can("host", "127.0.0.1")
    rel, _ = net.preserve("release", "-o", str(tmp_path / "out"))
    assert rel.returncode == 0, rel.stderr.decode()
    assert _links(net) == before
    # A link just brought up needs a moment (IPv6 duplicate address detection, neighbour
    # entries that failed during the cut): poll, bounded, instead of one immediate try.
    for role, addr in (("resp", "10.231.1.1"), ("resp", "fd00:231:1::1"), ("other", "10.231.2.1")):
        deadline = time.monotonic() + 8
        while not net.can(role, addr) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert net.can(role, addr), (role, addr)


RECHECK = r"""
import sys, json
from pathlib import Path
from types import SimpleNamespace
from agent.isolation.allowlist import parse_allow
from agent.isolation.base import Request
from agent.isolation.engine import Isolation
from agent.isolation.nftables import NftablesMethod
from agent.console import Console
from collectors.summary import Summary
from manifests.journal import Journal
from manifests.signing import Signer
import subprocess
root = Path(sys.argv[1]); root.mkdir()
journal = Journal.create(root / "custody.jsonl", Signer.generate_ephemeral())
journal.append("start")
ctx = SimpleNamespace(root=root, journal=journal, periodic=[], summary=Summary())
iso = Isolation(NftablesMethod(), Request(parse_allow("10.231.1.2")), [])
extra, code = iso(ctx, Console())
calm = iso._recheck()
subprocess.run(["nft", "flush", "ruleset"], check=True)
for callback in ctx.periodic:
    callback()
present = subprocess.run(["nft", "list", "table", "inet", "preserve_isolation"]).returncode == 0
journal.close()
print(json.dumps({"code": code, "calm": calm, "present": present}))
"""


def test_periodic_recheck_callback_reapplies_after_nft_flush_ruleset(
    net: Topology, tmp_path: Path
) -> None:
    # The callback itself, in-process: the list --watch calls (the next test runs --watch).
    done = net.ex(
        "host",
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + RECHECK,
        str(tmp_path / "ev"),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout.decode().splitlines()[-1])
    assert result == {"code": 0, "calm": False, "present": True}
    actions = [r.get("action") for r in journal_records(tmp_path / "ev") if r["type"] == "action"]
    assert actions.count("isolation-lost") == 1 and actions[-1] == "isolation-reapplied"
    assert not net.can("other", "10.231.2.1", timeout=0.5)
    assert net.can("resp", "10.231.1.1")


def test_nft_flush_ruleset_during_watch_is_detected_reapplied_and_journaled(
    net: Topology, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.log").write_text("line\n")
    out = tmp_path / "out"
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.Popen(
        ["ip", "netns", "exec", net.ns["host"], *PRESERVE_ARGV, "--json", "-o", str(out),
         "--only", "files", "--path", str(src), "--isolate", "--allow", "10.231.1.2",
         "--watch", "8s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # wait for the cut, seen from the kit's state
            states = list((out / ".preserve-isolation").glob("*.json"))
            if states and json.loads(states[0].read_text()).get("status") == "in-force":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("isolation never reached in-force")
        assert not net.can("other", "10.231.2.1", timeout=0.5)
        net.ex("host", "nft", "flush", "ruleset")  # another program wipes the firewall
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if (
                net.ex(
                    "host", "nft", "list", "table", "inet", "preserve_isolation", check=False
                ).returncode
                == 0
            ):
                break
            time.sleep(0.1)
        assert not net.can("other", "10.231.2.1", timeout=0.5)  # re-applied by the watch
        assert net.can("resp", "10.231.1.1")
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr.decode()
    evidence = Path(json.loads(stdout)["evidence_dir"])
    actions = [r.get("action") for r in journal_records(evidence) if r["type"] == "action"]
    assert actions.count("isolation-lost") == 1
    assert actions.index("isolation-lost") < actions.index("isolation-reapplied")
    net.preserve("release", "-o", str(out))
