"""macOS: a pf anchor, enabled with a reference token, released with that token.

Cannot run here; the exact commands are generated and unit-tested. The rules go into
``com.apple/preserve_isolation``, an anchor the stock ``/etc/pf.conf`` already evaluates
(``anchor "com.apple/*"``), so the main ruleset is never replaced. ``pfctl -E`` enables pf
and returns a reference token; release flushes the anchor and gives the token back with
``pfctl -X TOKEN``, which disables pf only if nobody else holds a reference: never
``pfctl -d``. Allowlist rules are stateless (``no state``) so they pass packets of
connections that already exist; existing pf states are killed so that the intruder's
live sessions stop."""

from __future__ import annotations

import re
from typing import Any

from collectors._common import MACOS

from .base import Method, MethodError, Plan, Request, Runner, Step

ANCHOR = "com.apple/preserve_isolation"


def anchor_rules(request: Request) -> str:
    lines = ["pass quick on lo0 all no state"]
    for e in request.allow:
        fam = "inet6" if e.family == 6 else "inet"
        if e.port is None:
            lines.append(f"pass quick {fam} from {e.network} to any no state")
            lines.append(f"pass quick {fam} from any to {e.network} no state")
            continue
        lines.append(
            f"pass quick {fam} proto {{ tcp udp }} from {e.network} to any port {e.port} no state"
        )
        lines.append(
            f"pass quick {fam} proto {{ tcp udp }} from {e.network} port {e.port} to any no state"
        )
        lines.append(
            f"pass quick {fam} proto {{ tcp udp }} from any to {e.network} port {e.port} no state"
        )
        lines.append(
            f"pass quick {fam} proto {{ tcp udp }} from any port {e.port} to {e.network} no state"
        )
    if request.allow_dns:
        lines.append("pass quick proto { tcp udp } from any to any port 53 no state")
        lines.append("pass quick proto { tcp udp } from any port 53 to any no state")
    if request.allow_dhcp:
        lines.append("pass quick inet proto udp from any port { 67 68 } to any port { 67 68 }")
    lines.append("block drop quick all")
    return "\n".join(lines) + "\n"


def parse_token(output: str) -> str | None:
    """``pfctl -E`` prints e.g. ``Token : 1234567890`` (on stderr)."""
    match = re.search(r"Token\s*:\s*(\d+)", output)
    return match.group(1) if match else None


def pf_plan(request: Request) -> Plan:
    apply = [
        Step(["pfctl", "-a", ANCHOR, "-f", "-"], stdin=anchor_rules(request)),
        Step(["pfctl", "-E"]),
        Step(["pfctl", "-k", "0.0.0.0/0", "-k", "0.0.0.0/0"], tolerate=True),
        Step(["pfctl", "-k", "::/0", "-k", "::/0"], tolerate=True),
    ]
    release = [Step(["pfctl", "-a", ANCHOR, "-F", "all"]), Step(["pfctl", "-X", "TOKEN"])]
    return Plan("pf", apply, release, [f"pf anchor {ANCHOR}; pf enabled by reference"], {})


class PfMethod(Method):
    name = "pf"
    priority = 30

    def viable(self) -> None:
        if not MACOS:
            raise MethodError("pf isolation is implemented for macOS only")

    def plan(self, request: Request, runner: Runner, before: dict[str, Any]) -> Plan:
        return pf_plan(request)

    def apply(self, plan: Plan, runner: Runner) -> list[str]:
        failures = []
        for step in plan.apply:
            record = runner.run(step, "apply")
            if step.argv == ["pfctl", "-E"]:
                token = parse_token(record["stdout"] + record["stderr"])
                if token is None:
                    failures.append("pfctl -E gave no reference token; release will need pfctl -d")
                else:
                    plan.release[-1] = Step(["pfctl", "-X", token])
            elif record["exit_code"] != 0 and not step.tolerate:
                failures.append(f"{' '.join(step.argv)} exited {record['exit_code']}")
        return failures

    def check(self, plan: Plan, runner: Runner) -> tuple[bool, str]:
        out = runner.output(["pfctl", "-a", ANCHOR, "-s", "rules"], "check") or ""
        status = runner.output(["pfctl", "-s", "info"], "check") or ""
        if "Status: Enabled" not in status:
            return False, "pf is not enabled"
        if "block drop quick all" not in out:
            return False, f"anchor {ANCHOR} lacks its final block rule"
        return True, f"pf enabled, anchor {ANCHOR} loaded"
