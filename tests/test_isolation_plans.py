"""The generated plans: allowlist parsing, and the exact Windows and macOS commands
(which cannot run here), plus the exec-hook contract run for real in a namespace."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import preserve, requires_root

from agent.isolation import cli as iso_cli
from agent.isolation.allowlist import AllowError, build_allowlist, parse_allow, ssh_peer
from agent.isolation.base import Request, default_probes, parse_probe
from agent.isolation.iptables import restore_input
from agent.isolation.nftables import ruleset
from agent.isolation.pf import anchor_rules, parse_token, pf_plan
from agent.isolation.windows import allow_rules, rule_names, windows_plan
from manifests.errors import UsageError


def test_allow_forms() -> None:
    texts = ["10.0.0.5", "10.0.0.0/24:22", "[fd00::5]:443", "fd00::/64", "[fd00::1/128]:22"]
    got = [e.text() for t in texts for e in parse_allow(t)]
    assert got == ["10.0.0.5", "10.0.0.0/24:22", "[fd00::5]:443", "fd00::/64", "[fd00::1]:22"]
    assert [e.port for t in texts for e in parse_allow(t)] == [None, 22, 443, None, 22]
    localhost = parse_allow("localhost:22")  # names are resolved now, before any rule
    assert localhost and all(e.network.is_loopback and e.port == 22 for e in localhost)
    assert all(e.source == "localhost:22" for e in localhost)
    for bad in ("10.0.0.5:99999", "not a host!", "10.0.0.5:ssh", ""):
        with pytest.raises(AllowError):
            parse_allow(bad)


def test_ssh_peer_and_no_keep_ssh() -> None:
    env = {"SSH_CONNECTION": "fd00::9 51000 fd00::1 2222"}
    peer = ssh_peer(env)
    assert peer is not None and peer.text() == "[fd00::9]:2222"
    assert build_allowlist([], env, keep_ssh=False) == []
    assert ssh_peer({"SSH_CONNECTION": "garbage"}) is None


def test_options_without_isolate_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--allow, --dry-run"):
        iso_cli.prepare({"allow": ("10.0.0.1",), "dry_run": True}, "x")


def test_isolate_without_root_is_refused_before_collecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError, match="needs root"):
        iso_cli.prepare({"isolate": True, "isolation_method": "nftables"}, "x")


def test_nft_ruleset_has_no_established_accept_and_dns_only_when_asked() -> None:
    plain = ruleset(Request(parse_allow("10.0.0.5")))
    # "established" only narrows replies from an allowlisted peer's port; never on its own
    ct_lines = [line.strip() for line in plain.splitlines() if "established" in line]
    assert ct_lines and all("@allow" in line and "th sport" in line for line in ct_lines)
    assert "53" not in plain and "67" not in plain
    assert plain.count("policy drop") == 3 and "priority -300" in plain
    opened = ruleset(Request(parse_allow("10.0.0.5"), allow_dns=True, allow_dhcp=True))
    assert "th dport 53 accept" in opened and "th sport 53 ct state established" in opened
    assert "udp sport 68 udp dport 67 accept" in opened


def test_iptables_restore_input() -> None:
    text = restore_input(6, Request(parse_allow("[fd00::5]:22") + parse_allow("10.0.0.1")))
    assert "10.0.0.1" not in text  # v4 entries stay out of ip6tables
    assert "-A preserve-in -s fd00::5/128 -p tcp -m tcp --dport 22 -j ACCEPT" in text
    assert text.splitlines()[-4:] == [
        "-I INPUT 1 -j preserve-in",
        "-I OUTPUT 1 -j preserve-out",
        "-I FORWARD 1 -j preserve-fwd",
        "COMMIT",
    ]


def test_windows_commands() -> None:
    request = Request(parse_allow("10.0.0.5") + parse_allow("10.0.1.0/24:3389"))
    plan = windows_plan(request, r"E:\kit\.preserve-isolation\web01.wfw")
    argvs = [s.argv for s in plan.apply]
    assert argvs[0] == ["netsh", "advfirewall", "export", r"E:\kit\.preserve-isolation\web01.wfw"]
    assert argvs[1][-3:] == ["name=all", "new", "enable=no"]
    assert argvs[3][-1] == "blockinbound,blockoutbound"
    assert [
        "netsh", "advfirewall", "firewall", "add", "rule", "name=preserve-isolation-1-in",
        "dir=in", "action=allow", "remoteip=10.0.0.5/32", "protocol=any",
    ] in argvs  # fmt: skip
    assert len(allow_rules(request)) == 2 + 2 * 2 * 2
    assert [s.argv for s in plan.release] == [
        ["netsh", "advfirewall", "import", r"E:\kit\.preserve-isolation\web01.wfw"]
    ]
    shown = "Rule Name:    preserve-isolation-1-in\n----\nEnabled:   Yes\nRule Name:  Other\n"
    assert rule_names(shown) == ["preserve-isolation-1-in", "Other"]


def test_pf_commands_and_token() -> None:
    request = Request(parse_allow("[fd00::5]:22"))
    rules = anchor_rules(request)
    assert rules.splitlines()[0] == "pass quick on lo0 all no state"
    assert rules.splitlines()[-1] == "block drop quick all"
    assert "pass quick inet6 proto { tcp udp } from fd00::5/128 to any port 22 no state" in rules
    plan = pf_plan(request)
    assert plan.apply[0].argv == ["pfctl", "-a", "com.apple/preserve_isolation", "-f", "-"]
    assert ["pfctl", "-E"] in [s.argv for s in plan.apply]
    assert all("-d" not in s.argv for s in plan.apply + plan.release)
    assert parse_token("pf enabled\nToken : 1385924127\n") == "1385924127"
    assert parse_token("pfctl: permission denied") is None


def test_probe_parsing_and_defaults() -> None:
    assert parse_probe("[2001:db8::1]:9") == ("2001:db8::1", 9)
    assert parse_probe("192.0.2.1:9") == ("192.0.2.1", 9)
    routes = {"routes_v4": [{"dst": "default", "gateway": "10.0.0.1"}], "routes_v6": []}
    assert default_probes([], routes) == [("192.0.2.1", 9)]
    routes = {"routes_v4": [{"dst": "10.0.0.0/24", "dev": "eth0", "scope": "link"}]}
    assert default_probes(parse_allow("10.0.0.254"), routes) == [("10.0.0.253", 9)]


HOOK = """#!/bin/sh
# A test hook honouring the contract: it applies a real nft table and says how to undo it.
echo "$1 $PRESERVE_ALLOW dns=$PRESERVE_ALLOW_DNS" >> "$HOOK_LOG"
case "$1" in
  plan) echo "would add table inet hook_cut" ;;
  apply)
    nft -f - <<EOF || exit 1
table inet hook_cut {
  chain i { type filter hook input priority 0; policy drop;
            iif lo accept; ip saddr 10.231.1.2 accept; }
  chain o { type filter hook output priority 0; policy drop;
            oif lo accept; ip daddr 10.231.1.2 accept; }
}
EOF
    echo '{"release_state": {"table": "hook_cut"}, "detail": "table hook_cut loaded"}' ;;
  check) nft list table inet hook_cut >/dev/null 2>&1 || exit 3 ;;
  release)
    echo "state=$PRESERVE_RELEASE_STATE" >> "$HOOK_LOG"
    table=$(printf %s "$PRESERVE_RELEASE_STATE" | sed 's/.*: "//; s/".*//')
    nft delete table inet "$table" ;;
  *) exit 2 ;;
esac
"""


@requires_root
def test_exec_hook_contract(tmp_path: Path) -> None:
    from netns_topology import Topology

    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "hook.log"
    net = Topology()
    try:
        src = tmp_path / "src"
        src.mkdir()
        (src / "f").write_text("x")
        env = {"HOOK_LOG": str(log)}
        done, _ = net.preserve(
            "--json", "-o", str(tmp_path / "out"), "--only", "files", "--path", str(src),
            "--isolate", "--isolation-method", f"exec:{hook}", "--allow", "10.231.1.2", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        summary = json.loads(done.stdout)
        assert summary["isolation"]["status"] == "in-force"
        assert not net.can("other", "10.231.2.1", timeout=0.5)
        assert net.can("resp", "10.231.1.1")
        rel, _ = net.preserve("release", "-o", str(tmp_path / "out"), env=env)
        assert rel.returncode == 0, rel.stderr.decode()
        assert net.can("other", "10.231.2.1")
        lines = log.read_text().splitlines()
        assert lines[0] == "apply 10.231.1.2/32 dns=0" and lines[1].startswith("check")
        assert lines[-2].startswith("release") and lines[-1] == 'state={"table": "hook_cut"}'
    finally:
        net.close()
    assert os.path.exists(hook)


def test_link_down_plan_keeps_managers_off_and_restores_everything() -> None:
    from agent.isolation.linkdown import plan_for

    before = {
        "addresses": [
            {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "addr_info": []},
            {
                "ifname": "eth0",
                "flags": ["BROADCAST", "UP"],
                "addr_info": [
                    {
                        "family": "inet",
                        "local": "10.0.0.5",
                        "prefixlen": 24,
                        "broadcast": "10.0.0.255",
                    },
                    {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
                    {"family": "inet6", "local": "2001:db8::5", "prefixlen": 64, "scope": "global"},
                ],
            },
            {"ifname": "eth1", "flags": ["BROADCAST"], "addr_info": []},  # already down
        ],
        "routes_v4": [
            {"dst": "default", "gateway": "10.0.0.1", "dev": "eth0", "protocol": "static"}
        ],
        "routes_v6": [{"dst": "fe80::/64", "dev": "eth0"}],
    }
    apply, release, names = plan_for(before, {"networkmanager": True, "systemd_networkd": True})
    assert names == ["eth0"]
    assert [s.argv for s in apply] == [
        ["nmcli", "device", "set", "eth0", "managed", "no"],
        ["networkctl", "down", "eth0"],
        ["ip", "link", "set", "dev", "eth0", "down"],
    ]
    assert [s.argv for s in release] == [
        ["ip", "link", "set", "dev", "eth0", "up"],
        ["ip", "-4", "address", "replace", "10.0.0.5/24", "dev", "eth0", "broadcast", "10.0.0.255"],
        ["ip", "-6", "address", "replace", "2001:db8::5/64", "dev", "eth0", "nodad"],
        [
            "ip",
            "-4",
            "route",
            "replace",
            "default",
            "via",
            "10.0.0.1",
            "dev",
            "eth0",
            "proto",
            "static",
        ],
        ["networkctl", "up", "eth0"],
        ["nmcli", "device", "set", "eth0", "managed", "yes"],
    ]


@requires_root  # as non-root, "needs root" comes first
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--isolate", "--isolation-method", "bogus"], b"unknown --isolation-method bogus"),
        (["--isolate", "--allow", "10.0.0.1:70000"], b"is not a port"),
        (["--isolate", "--isolation-method", "exec:/nonexistent/hook"], b"not an executable"),
        (["--dry-run"], b"only make sense with --isolate"),
        (["--isolate", "--probe", "nowhere"], b"--probe nowhere"),
    ],
)
def test_isolation_usage_errors_stop_before_collecting(
    tmp_path: Path, args: list[str], message: bytes
) -> None:
    result = preserve("-o", tmp_path / "out", "--only", "files", "--path", tmp_path, *args)
    assert result.returncode == 2, result.stderr.decode()
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


@requires_root
def test_failing_hook_exits_4_and_collection_completes(tmp_path: Path) -> None:
    from netns_topology import Topology

    hook = tmp_path / "broken.sh"
    hook.write_text("#!/bin/sh\necho 'cannot reach the cloud API' >&2\nexit 1\n")
    hook.chmod(0o755)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    net = Topology()
    try:
        done, _ = net.preserve(
            "--json", "-o", str(tmp_path / "out"), "--only", "files", "--path", str(src),
            "--isolate", "--isolation-method", f"exec:{hook}",
        )  # fmt: skip
    finally:
        net.close()
    assert done.returncode == 4, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["isolation"]["status"] == "failed" and summary["status"] == "complete"
    assert summary["counts"]["stored"] == 1
    records = [json.loads(x) for x in (Path(summary["evidence_dir"]) / "custody.jsonl").open()]
    command = next(r for r in records if r.get("action") == "isolation-command")
    assert command["exit_code"] == 1 and "cannot reach the cloud API" in command["stderr"]


def test_builtin_methods_are_entry_points_with_serialisable_plans() -> None:
    from agent.isolation.base import Plan, Runner, Step
    from agent.isolation.registry import available

    failures: list[str] = []
    methods = available(lambda name, e: failures.append(name))
    assert not failures
    assert {"nftables", "iptables", "link-down", "windows", "pf"} <= set(methods)
    request = Request(parse_allow("10.0.0.5") + parse_allow("[fd00::5]:22"), allow_dns=True)
    for name, cls in methods.items():
        assert cls.name == name and isinstance(cls.priority, int)
        if name == "link-down":
            continue  # its plan reads the live links; tested above and in a namespace
        plan = cls().plan(request, Runner(), {"kit_dir": "/kit"})
        assert isinstance(plan, Plan) and plan.apply and plan.release
        for step in plan.apply + plan.release:
            assert Step.from_dict(json.loads(json.dumps(step.to_dict()))) == step


def test_commands_come_from_system_directories_not_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planted 'ip' early in PATH is never run; the journal names the binary that ran."""
    from agent.isolation.base import Runner, Step, have

    planted = tmp_path / "ip"
    planted.write_text("#!/bin/sh\necho planted\n")
    planted.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    record = Runner().run(Step(["ip", "-V"]), "test")
    assert record["argv"][0] in ("/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip")
    assert b"planted" not in record["stdout"].encode()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # env -i PATH=/usr/bin:/bin, as from the kit
    assert have("ip")
