"""Linux default: one dedicated nftables ``inet`` table, loaded in one atomic transaction.

Why a table of its own: a packet must be accepted by every base chain on a hook, so a
drop-policy chain here cannot be reopened by another table's ``accept``, and ``nft delete
table`` removes exactly what was added. The chains run at priority -300, before conntrack
(-200), so dropped packets do not even create conntrack entries, and there is no
"established" accept: the intruder's live sessions stop passing data at once."""

from __future__ import annotations

import json
from typing import Any

from .allowlist import AllowEntry
from .base import Method, MethodError, Plan, Request, Runner, Step, have
from .state import hint

TABLE = "preserve_isolation"
PRIORITY = -300
HOOKS = {"input": "input", "output": "output", "forward": "forward"}
COMMENT_MAX = 128


def _elements(entries: list[AllowEntry], family: int, ports: bool) -> list[str]:
    out = []
    for e in entries:
        if e.family != family or (e.port is not None) != ports:
            continue
        out.append(f"{e.network} . {e.port}" if ports else str(e.network))
    return list(dict.fromkeys(out))


def _set(name: str, type_: str, elements: list[str]) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {type_}", "\t\tflags interval"]
    if elements:
        lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
    return lines + ["\t}"]


def _rules(direction: str, request: Request) -> list[str]:
    """Accept rules for one base chain; ``direction`` is input or output."""
    inbound = direction == "input"
    peer = "saddr" if inbound else "daddr"
    lo = 'iif "lo"' if inbound else 'oif "lo"'
    rules = [f"{lo} accept"]
    for ipkw, suffix in (("ip", "4"), ("ip6", "6")):
        rules.append(f"{ipkw} {peer} @allow{suffix} accept")
        for side in ("dport", "sport"):
            # Inbound from the peer's PORT only as a reply to a connection this host made:
            # otherwise any source port PORT would open every local service to the peer.
            ct = " ct state established" if inbound and side == "sport" else ""
            rules.append(
                f"meta l4proto {{ tcp, udp }} {ipkw} {peer} . th {side} @allow{suffix}_port"
                f"{ct} accept"
            )
    # IPv6 neighbour discovery (link-local only: hop limit 255 cannot have been routed);
    # without it an allowlisted IPv6 peer on the link is unreachable.
    rules.append("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept")
    if request.allow_dns:  # replies only: a source port of 53 alone opens nothing
        rule = "th sport 53 ct state established" if inbound else "th dport 53"
        rules.append(f"meta l4proto {{ tcp, udp }} {rule} accept")
    if request.allow_dhcp:
        if inbound:
            rules.append("udp sport 67 udp dport 68 accept")
            rules.append("udp sport 547 udp dport 546 accept")
        else:
            rules.append("udp sport 68 udp dport 67 accept")
            rules.append("udp sport 546 udp dport 547 accept")
    return rules


def _comment(request: Request) -> str:
    """Names the saved release state, so a bare ``preserve release`` can find it (nft
    allows 128 characters; a longer path leaves the hint out)."""
    return hint(request.state_file, COMMENT_MAX) or (
        "preserve isolation; undo: preserve release -o KIT_OUTPUT"
    )


def ruleset(request: Request) -> str:
    """The whole transaction: create-then-delete makes a re-run replace, not fail."""
    allow = request.allow
    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        f'\tcomment "{_comment(request)}"',
    ]
    lines += _set("allow4", "ipv4_addr", _elements(allow, 4, False))
    lines += _set("allow6", "ipv6_addr", _elements(allow, 6, False))
    lines += _set("allow4_port", "ipv4_addr . inet_service", _elements(allow, 4, True))
    lines += _set("allow6_port", "ipv6_addr . inet_service", _elements(allow, 6, True))
    for chain in ("input", "output", "forward"):
        lines.append(f"\tchain {chain} {{")
        lines.append(f"\t\ttype filter hook {HOOKS[chain]} priority {PRIORITY}; policy drop;")
        if chain != "forward":  # forwarded traffic: nothing passes, allowlisted or not
            lines += [f"\t\t{r}" for r in _rules(chain, request)]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def expected_shape(request: Request) -> dict[str, Any]:
    allow = request.allow
    return {
        "chains": {
            c: len(_rules(c, request)) if c != "forward" else 0
            for c in ("input", "output", "forward")
        },
        "sets": {
            "allow4": len(_elements(allow, 4, False)),
            "allow6": len(_elements(allow, 6, False)),
            "allow4_port": len(_elements(allow, 4, True)),
            "allow6_port": len(_elements(allow, 6, True)),
        },
    }


def loaded_shape(listing: str) -> dict[str, Any]:
    """Chains (with hook, priority and policy) and set sizes from ``nft -j list table``."""
    chains: dict[str, Any] = {}
    rules: dict[str, int] = {}
    sets: dict[str, int] = {}
    for item in json.loads(listing).get("nftables", []):
        if "chain" in item:
            c = item["chain"]
            chains[c["name"]] = (c.get("hook"), c.get("prio"), c.get("policy"))
        elif "rule" in item:
            name = item["rule"]["chain"]
            rules[name] = rules.get(name, 0) + 1
        elif "set" in item:
            sets[item["set"]["name"]] = len(item["set"].get("elem", []))
    return {"chains": chains, "rules": rules, "sets": sets}


class NftablesMethod(Method):
    name = "nftables"
    priority = 20

    def viable(self) -> None:
        if not have("nft"):
            raise MethodError("the nft command is not installed")

    def plan(self, request: Request, runner: Runner, before: dict[str, Any]) -> Plan:
        self._shape = expected_shape(request)
        return Plan(
            method=self.name,
            apply=[Step(["nft", "-f", "-"], stdin=ruleset(request))],
            release=[Step(["nft", "delete", "table", "inet", TABLE])],
            notes=[
                f"dedicated table inet {TABLE}, chains at priority {PRIORITY}, policy drop; "
                "other tables are untouched"
            ],
            data={"shape": self._shape},
        )

    def check(self, plan: Plan, runner: Runner) -> tuple[bool, str]:
        listing = runner.output(["nft", "-j", "list", "table", "inet", TABLE], "check")
        if listing is None:
            return False, f"table inet {TABLE} is not loaded"
        try:
            got = loaded_shape(listing)
        except (ValueError, KeyError, TypeError) as e:
            return False, f"cannot read nft's listing: {e}"
        want = plan.data["shape"]
        problems = []
        for chain, count in want["chains"].items():
            if got["chains"].get(chain) != (HOOKS[chain], PRIORITY, "drop"):
                problems.append(f"chain {chain} is {got['chains'].get(chain)}")
            elif got["rules"].get(chain, 0) != count:
                problems.append(
                    f"chain {chain} has {got['rules'].get(chain, 0)} rules, not {count}"
                )
        for name, count in want["sets"].items():
            if got["sets"].get(name) != count:
                problems.append(f"set {name} has {got['sets'].get(name)} elements, not {count}")
        if problems:
            return False, "; ".join(problems)
        return True, f"table inet {TABLE} loaded as written (input, output, forward: drop)"
