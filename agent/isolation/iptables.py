"""Fallback where nftables is absent: dedicated chains jumped to first, for both
``iptables`` and ``ip6tables``.

Each family is loaded with one ``iptables-restore --noflush`` (atomic per family): three
chains of our own (``preserve-in``, ``preserve-out``, ``preserve-fwd``) ending in DROP, and
one jump inserted at the top of INPUT, OUTPUT and FORWARD. Release deletes exactly those
three jumps and three chains; nothing else in the filter table is touched."""

from __future__ import annotations

from typing import Any

from .allowlist import AllowEntry
from .base import Method, MethodError, Plan, Request, Runner, Step, have
from .state import hint

CHAINS = {"INPUT": "preserve-in", "OUTPUT": "preserve-out", "FORWARD": "preserve-fwd"}
TOOLS = {4: "iptables", 6: "ip6tables"}
COMMENT_MAX = 256  # xt_comment's limit


def chain_rules(family: int, builtin: str, request: Request) -> list[str]:
    """Rules of one dedicated chain, in ``iptables -S`` syntax (without ``-A CHAIN``)."""
    if builtin == "FORWARD":
        return ["-j DROP"]
    inbound = builtin == "INPUT"
    peer = "-s" if inbound else "-d"
    rules = []
    note = hint(request.state_file, COMMENT_MAX) if inbound else None
    if note:  # a rule without a target only counts: it names the state file on the kit
        rules.append(f'-m comment --comment "{note}"')
    rules.append("-i lo -j ACCEPT" if inbound else "-o lo -j ACCEPT")
    entries: list[AllowEntry] = [e for e in request.allow if e.family == family]
    for e in entries:
        if e.port is None:
            rules.append(f"{peer} {e.network} -j ACCEPT")
            continue
        for proto in ("tcp", "udp"):
            for side in ("--dport", "--sport"):
                ct = " -m conntrack --ctstate ESTABLISHED" if inbound and side == "--sport" else ""
                rules.append(
                    f"{peer} {e.network} -p {proto} -m {proto} {side} {e.port}{ct} -j ACCEPT"
                )
    if family == 6:
        for kind in ("135", "136"):  # neighbour solicitation/advertisement, link-local only
            rules.append(f"-p ipv6-icmp -m icmp6 --icmpv6-type {kind} -m hl --hl-eq 255 -j ACCEPT")
    if request.allow_dns:
        match = "--sport 53 -m conntrack --ctstate ESTABLISHED" if inbound else "--dport 53"
        for proto in ("udp", "tcp"):
            rules.append(f"-p {proto} -m {proto} {match} -j ACCEPT")
    if request.allow_dhcp:
        server, client = ("67", "68") if family == 4 else ("547", "546")
        src, dst = (server, client) if inbound else (client, server)
        rules.append(f"-p udp -m udp --sport {src} --dport {dst} -j ACCEPT")
    return rules + ["-j DROP"]


def restore_input(family: int, request: Request) -> str:
    lines = ["*filter"]
    lines += [f":{chain} - [0:0]" for chain in CHAINS.values()]
    for builtin, chain in CHAINS.items():
        lines += [f"-A {chain} {rule}" for rule in chain_rules(family, builtin, request)]
    lines += [f"-I {builtin} 1 -j {chain}" for builtin, chain in CHAINS.items()]
    return "\n".join(lines + ["COMMIT"]) + "\n"


def release_steps(tolerate: bool = False) -> list[Step]:
    steps = []
    for tool in TOOLS.values():
        steps += [
            Step([tool, "-w", "5", "-D", b, "-j", c], tolerate=tolerate) for b, c in CHAINS.items()
        ]
        steps += [Step([tool, "-w", "5", "-F", c], tolerate=tolerate) for c in CHAINS.values()]
        steps += [Step([tool, "-w", "5", "-X", c], tolerate=tolerate) for c in CHAINS.values()]
    return steps


def _normalise(line: str) -> str:
    return " ".join(line.split())


class IptablesMethod(Method):
    name = "iptables"
    priority = 10

    def viable(self) -> None:
        for tool in ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore"):
            if not have(tool):
                raise MethodError(f"the {tool} command is not installed")

    def _present(self, runner: Runner) -> bool:
        return any(
            runner.run(Step([TOOLS[f], "-w", "5", "-S", CHAINS["INPUT"]]), "check")["exit_code"]
            == 0
            for f in TOOLS
        )

    def plan(self, request: Request, runner: Runner, before: dict[str, Any]) -> Plan:
        apply: list[Step] = []
        for family, tool in TOOLS.items():
            apply.append(
                Step([f"{tool}-restore", "-w", "5", "--noflush"], restore_input(family, request))
            )
        self._expected = {
            f: {c: chain_rules(f, b, request) for b, c in CHAINS.items()} for f in TOOLS
        }
        return Plan(
            method=self.name,
            apply=apply,
            release=release_steps(),
            notes=[
                "dedicated chains preserve-in/out/fwd jumped to first; DROP at their end; "
                "chains left by an earlier run are removed first"
            ],
            data={"expected": {str(f): v for f, v in self._expected.items()}},
        )

    def apply(self, plan: Plan, runner: Runner) -> list[str]:
        """A re-run (or a re-apply during --watch) replaces the earlier cut, never stacks."""
        if self._present(runner):
            runner.run_all(release_steps(tolerate=True), "apply: remove the earlier cut")
        return runner.run_all(plan.apply, "apply")

    def check(self, plan: Plan, runner: Runner) -> tuple[bool, str]:
        problems = []
        for family, tool in TOOLS.items():
            expected = plan.data["expected"][str(family)]
            for builtin, chain in CHAINS.items():
                listing = runner.output([tool, "-w", "5", "-S", builtin], "check")
                first = (listing or "").splitlines()[1:2]
                if [_normalise(x) for x in first] != [f"-A {builtin} -j {chain}"]:
                    problems.append(f"{tool} {builtin} does not jump to {chain} first")
                    continue
                listing = runner.output([tool, "-w", "5", "-S", chain], "check")
                got = [_normalise(x) for x in (listing or "").splitlines()[1:]]
                want = [_normalise(f"-A {chain} {r}") for r in expected[chain]]
                if got != want:
                    problems.append(f"{tool} chain {chain} differs from what was written")
        if problems:
            return False, "; ".join(problems)
        return True, "iptables and ip6tables chains loaded as written, jumped to first"
