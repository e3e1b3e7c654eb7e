"""Windows: Windows Defender Firewall (on the Windows Filtering Platform) through netsh.

Cannot run here; the exact commands are generated and unit-tested. Sequence:

1. ``netsh advfirewall export <kit>\\<id>.wfw`` saves the whole previous policy on the kit.
2. Every existing rule is disabled (in Windows Firewall an allow rule beats the default
   block, so a rule left enabled would reopen a hole).
3. All profiles: firewall on, block inbound and outbound by default.
4. One allow rule per allowlist entry and direction, named ``preserve-isolation-...``.
5. Existing connections are not cut by WFP policy changes on every Windows version:
   the note says so, and the probe tells.

Release: ``netsh advfirewall import <file>`` puts the saved policy back exactly."""

from __future__ import annotations

import os
from typing import Any

from collectors._common import WINDOWS

from .base import Method, MethodError, Plan, Request, Runner, Step

RULE_PREFIX = "preserve-isolation"


def _remote(entry: Any) -> str:
    return str(entry.network)


def allow_rules(request: Request) -> list[list[str]]:
    rules = []
    for n, entry in enumerate(request.allow, 1):
        for direction in ("in", "out"):
            base = [
                "netsh", "advfirewall", "firewall", "add", "rule",
                f"name={RULE_PREFIX}-{n}-{direction}", f"dir={direction}", "action=allow",
                f"remoteip={_remote(entry)}",
            ]  # fmt: skip
            if entry.port is None:
                rules.append(base + ["protocol=any"])
                continue
            for proto in ("TCP", "UDP"):
                for side in ("localport", "remoteport"):
                    rules.append(
                        [*base[:5], f"name={RULE_PREFIX}-{n}-{direction}-{proto}-{side}",
                         *base[6:], f"protocol={proto}", f"{side}={entry.port}"]
                    )  # fmt: skip
    if request.allow_dns:
        for proto in ("UDP", "TCP"):
            rules.append([
                "netsh", "advfirewall", "firewall", "add", "rule",
                f"name={RULE_PREFIX}-dns-{proto}", "dir=out", "action=allow",
                f"protocol={proto}", "remoteport=53",
            ])  # fmt: skip
    if request.allow_dhcp:
        rules.append([
            "netsh", "advfirewall", "firewall", "add", "rule", f"name={RULE_PREFIX}-dhcp",
            "dir=out", "action=allow", "protocol=UDP", "localport=68", "remoteport=67",
        ])  # fmt: skip
    return rules


def windows_plan(request: Request, saved_policy: str) -> Plan:
    apply = [
        Step(["netsh", "advfirewall", "export", saved_policy]),
        Step(["netsh", "advfirewall", "firewall", "set", "rule", "name=all", "new", "enable=no"]),
        Step(["netsh", "advfirewall", "set", "allprofiles", "state", "on"]),
        Step(
            [
                "netsh",
                "advfirewall",
                "set",
                "allprofiles",
                "firewallpolicy",
                "blockinbound,blockoutbound",
            ]
        ),  # fmt: skip
    ]
    apply += [Step(argv) for argv in allow_rules(request)]
    release = [Step(["netsh", "advfirewall", "import", saved_policy])]
    notes = [
        f"previous firewall policy saved to {saved_policy} (on the kit) and restored from it",
        "loopback is not filtered by Windows Firewall",
    ]
    return Plan("windows", apply, release, notes, {"saved_policy": saved_policy})


def rule_names(show_output: str) -> list[str]:
    """Rule names from ``netsh advfirewall firewall show rule name=all`` (English UI)."""
    names = []
    for line in show_output.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Rule Name":
            names.append(value.strip())
    return names


class WindowsMethod(Method):
    name = "windows"
    priority = 30

    def viable(self) -> None:
        if not WINDOWS:
            raise MethodError("Windows Firewall exists only on Windows")

    def plan(self, request: Request, runner: Runner, before: dict[str, Any]) -> Plan:
        saved = os.path.join(before.get("kit_dir") or ".", f"{request.ident}.wfw")
        return windows_plan(request, saved)

    def check(self, plan: Plan, runner: Runner) -> tuple[bool, str]:
        out = runner.output(
            ["netsh", "advfirewall", "firewall", "show", "rule", "name=all"], "check"
        )
        ours = [n for n in rule_names(out or "") if n.startswith(RULE_PREFIX)]
        want = [s.argv[5][5:] for s in plan.apply if s.argv[3:5] == ["add", "rule"]]
        if sorted(ours) != sorted(want):
            return False, f"{len(ours)} of {len(want)} allow rules present"
        return True, "block policy set, allow rules present"
