"""The hard cut: every non-loopback interface down. It cuts the responder too.

Addresses and routes are saved first (the kernel drops routes and IPv6 addresses when a
link goes down), and the release plan puts links, addresses and routes back. Network
managers are kept from bringing links back (best effort, only in the host's initial
network namespace, where they run): NetworkManager is told to stop managing each device,
systemd-networkd is asked to take the link down itself (``networkctl down``), which it
honours until ``networkctl up``."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from .base import Method, MethodError, Plan, Request, Runner, Step, have

SKIP_ROUTE_PREFIXES = ("fe80::", "ff00::", "multicast")


def _in_initial_netns() -> bool:
    try:
        return os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net")
    except OSError:
        return False


def _active(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def managers() -> dict[str, bool]:
    """Which link managers would fight the cut here (only the initial netns has them)."""
    if not _in_initial_netns():
        return {"networkmanager": False, "systemd_networkd": False}
    return {
        "networkmanager": have("nmcli") and _active(["nmcli", "-t", "general", "status"]),
        "systemd_networkd": have("networkctl")
        and _active(["systemctl", "is-active", "--quiet", "systemd-networkd"]),
    }


def _route_argv(route: dict[str, Any], family: int) -> list[str] | None:
    dst = route.get("dst", "")
    if route.get("type") not in (None, "unicast") or dst.startswith(SKIP_ROUTE_PREFIXES):
        return None
    argv = ["ip", f"-{family}", "route", "replace", dst]
    for key, word in (
        ("gateway", "via"),
        ("dev", "dev"),
        ("protocol", "proto"),
        ("scope", "scope"),
        ("prefsrc", "src"),
        ("metric", "metric"),
        ("table", "table"),
    ):
        if route.get(key) not in (None, ""):
            argv += [word, str(route[key])]
    return argv


def plan_for(
    before: dict[str, Any], mgr: dict[str, bool]
) -> tuple[list[Step], list[Step], list[str]]:
    links = [
        link
        for link in before.get("addresses") or []
        if link.get("ifname") != "lo"
        and "LOOPBACK" not in link.get("flags", [])
        and "UP" in link.get("flags", [])
    ]
    names = [link["ifname"] for link in links]
    apply: list[Step] = []
    release: list[Step] = []
    for name in names:
        if mgr.get("networkmanager"):
            apply.append(Step(["nmcli", "device", "set", name, "managed", "no"], tolerate=True))
        if mgr.get("systemd_networkd"):
            apply.append(Step(["networkctl", "down", name], tolerate=True))
        apply.append(Step(["ip", "link", "set", "dev", name, "down"]))
    for link in links:
        name = link["ifname"]
        release.append(Step(["ip", "link", "set", "dev", name, "up"]))
        for info in link.get("addr_info", []):
            if info.get("scope") == "link" and info.get("family") == "inet6":
                continue  # the kernel makes the link-local address itself
            flag = "-6" if info.get("family") == "inet6" else "-4"
            argv = ["ip", flag, "address", "replace", f"{info['local']}/{info['prefixlen']}"]
            argv += ["dev", name]
            if info.get("broadcast"):
                argv += ["broadcast", info["broadcast"]]
            if flag == "-6":
                argv.append("nodad")  # it was in use a moment ago; do not wait for DAD
            release.append(Step(argv, tolerate=True))
    for family, key in ((4, "routes_v4"), (6, "routes_v6")):
        for route in before.get(key) or []:
            if route.get("dev") not in names or route.get("table") == "local":
                continue
            route_argv = _route_argv(route, family)
            if route_argv:
                release.append(Step(route_argv, tolerate=True))
    for name in names:
        if mgr.get("systemd_networkd"):
            release.append(Step(["networkctl", "up", name], tolerate=True))
        if mgr.get("networkmanager"):
            release.append(Step(["nmcli", "device", "set", name, "managed", "yes"], tolerate=True))
    return apply, release, names


class LinkDownMethod(Method):
    name = "link-down"
    priority = 0  # never chosen by auto: it cuts the responder too
    proof = frozenset({"no-route", "blocked-locally"})
    cuts_responder = True

    def viable(self) -> None:
        if not have("ip"):
            raise MethodError("the ip command (iproute2) is not installed")

    def plan(self, request: Request, runner: Runner, before: dict[str, Any]) -> Plan:
        mgr = managers()
        apply, release, names = plan_for(before, mgr)
        notes = [
            "link-down cuts EVERY connection, the responder's and the allowlist's too; "
            "use the console or out-of-band access"
        ]
        if not _in_initial_netns():
            notes.append("not the initial network namespace: link managers were left alone")
        if request.allow:
            notes.append("the allowlist cannot be honoured by link-down and is ignored")
        return Plan(self.name, apply, release, notes, {"links": names, "managers": mgr})

    def check(self, plan: Plan, runner: Runner) -> tuple[bool, str]:
        listing = runner.output(["ip", "-j", "link", "show"], "check")
        if listing is None:
            return False, "cannot list links"
        up = {
            link["ifname"]
            for link in json.loads(listing)
            if "UP" in link.get("flags", []) and link["ifname"] in plan.data["links"]
        }
        if up:
            return False, f"links still up: {', '.join(sorted(up))}"
        return True, f"links down: {', '.join(plan.data['links']) or '(none were up)'}"
