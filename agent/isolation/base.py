"""What every isolation method shares: the request, the plan, the command runner and the
probe that proves a cut.

A method turns a request into a plan (exact commands, each with its stdin), applies it,
verifies it and says how to undo it. The release plan is plain data (argv lists), saved on
the kit, so ``preserve release`` can undo the cut from another shell without the objects
that made it. Every command run is recorded with argv, stdin, exit code, output and UTC
time, for the custody journal."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from collectors.hostcmd import find_binary
from manifests.clock import utc_from_ns
from manifests.errors import UsageError
from manifests.journal import journal_safe

from .allowlist import AllowEntry

COMMAND_TIMEOUT = 20.0
OUTPUT_LIMIT = 256 * 1024  # per stream, in the journal
PROBE_TIMEOUT = 0.5
# Documentation ranges (RFC 5737, RFC 3849): never a real peer, so a probe cannot harm.
DEFAULT_PROBES = ("192.0.2.1:9", "[2001:db8::1]:9")


class MethodError(UsageError):
    """An isolation method cannot be used here (``viable()``), or the one asked for does
    not exist; found before anything is collected, so exit 2. The message says why."""


@dataclass
class Request:
    allow: list[AllowEntry]
    allow_dns: bool = False
    allow_dhcp: bool = False
    probes: list[tuple[str, int]] = field(default_factory=list)
    ident: str = "preserve"
    state_file: str | None = None  # where the release plan is saved on the kit

    def stays_open(self) -> list[str]:
        """Plain words for the summary: everything the cut leaves reachable."""
        open_ = ["loopback"] + [e.describe() for e in self.allow]
        if self.allow_dns:
            open_.append("DNS (port 53 to any server)")
        if self.allow_dhcp:
            open_.append("DHCP (ports 67/68, 546/547)")
        return open_


@dataclass
class Step:
    """One command of a plan: argv, optional stdin text, and whether failure is tolerable."""

    argv: list[str]
    stdin: str | None = None
    tolerate: bool = False  # e.g. deleting something another program already removed
    env: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"argv": self.argv}
        if self.stdin is not None:
            d["stdin"] = self.stdin
        if self.tolerate:
            d["tolerate"] = True
        if self.env:
            d["env"] = self.env
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(list(d["argv"]), d.get("stdin"), bool(d.get("tolerate")), d.get("env"))

    def shell(self) -> str:
        text = " ".join(_quote(a) for a in self.argv)
        if self.stdin is not None:
            text += " <<'EOF'\n" + self.stdin.rstrip("\n") + "\nEOF"
        return text


def _quote(arg: str) -> str:
    return shlex.quote(arg)


@dataclass
class Plan:
    method: str
    apply: list[Step]
    release: list[Step]
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # method-specific (ruleset, links)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "apply": [s.to_dict() for s in self.apply],
            "release": [s.to_dict() for s in self.release],
            "notes": self.notes,
        }


def _clip(data: bytes) -> str:
    text = data[:OUTPUT_LIMIT].decode("utf-8", "backslashreplace")
    return text + ("\n[... clipped]" if len(data) > OUTPUT_LIMIT else "")


class Runner:
    """Runs commands with a bound on time and output, and remembers each one."""

    def __init__(self, on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.on_record = on_record

    def run(self, step: Step, purpose: str = "") -> dict[str, Any]:
        began = time.time_ns()
        # Bare tool names are looked up only in the system directories, never through the
        # (possibly planted) PATH; the journal records the absolute path that ran.
        if "/" not in step.argv[0]:
            found = find_binary(step.argv[0])
            if found:
                step = dataclasses.replace(step, argv=[found, *step.argv[1:]])
        env = None
        if step.env:
            env = {**os.environ, **step.env}
        try:
            done = subprocess.run(
                step.argv,
                input=step.stdin.encode() if step.stdin is not None else None,
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                env=env,
                stdin=None if step.stdin is not None else subprocess.DEVNULL,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        except FileNotFoundError:
            code, out, err = 127, b"", f"{step.argv[0]}: not found".encode()
        except subprocess.TimeoutExpired as e:
            code, out = 124, e.stdout or b""
            err = (e.stderr or b"") + f"\ntimed out after {COMMAND_TIMEOUT:.0f} s".encode()
        record: dict[str, Any] = {
            "purpose": purpose,
            "argv": step.argv,
            "stdin": step.stdin,
            "exit_code": code,
            "stdout": _clip(out),
            "stderr": _clip(err),
            "started": utc_from_ns(began),
            "duration_ns": str(time.time_ns() - began),
        }
        if step.env:
            record["env"] = step.env
        self.records.append(record)
        if self.on_record:
            self.on_record(record)
        return record

    def output(self, argv: list[str], purpose: str = "") -> str | None:
        """Stdout of a read-only command, or None when it failed."""
        record = self.run(Step(argv), purpose)
        return record["stdout"] if record["exit_code"] == 0 else None

    def run_all(self, steps: list[Step], purpose: str) -> list[str]:
        """Run a plan in order; returns the failures that were not tolerable."""
        failures = []
        for step in steps:
            record = self.run(step, purpose)
            if record["exit_code"] != 0 and not step.tolerate:
                failures.append(
                    f"{' '.join(step.argv)} exited {record['exit_code']}: "
                    f"{record['stderr'].strip()[:200]}"
                )
        return failures


def have(tool: str) -> bool:
    return find_binary(tool) is not None


def before_state(runner: Runner) -> dict[str, Any]:
    """Addresses, routes and the full ruleset as they were, for the journal.

    The reads run in parallel: they are on the path to the cut, which must be quick."""
    reads: dict[str, list[str]] = {}
    if have("ip"):
        reads["addresses"] = ["ip", "-j", "address", "show"]
        reads["routes_v4"] = ["ip", "-j", "-4", "route", "show", "table", "all"]
        reads["routes_v6"] = ["ip", "-j", "-6", "route", "show", "table", "all"]
    if have("nft"):
        reads["nft_ruleset"] = ["nft", "list", "ruleset"]
    for tool in ("iptables-save", "ip6tables-save"):
        if have(tool):
            reads[tool] = [tool]
    with ThreadPoolExecutor(max_workers=max(len(reads), 1)) as pool:
        texts = list(pool.map(lambda argv: runner.output(argv, "before-state"), reads.values()))
    outputs = dict(zip(reads, texts, strict=True))
    state: dict[str, Any] = {k: None for k in ("addresses", "routes_v4", "routes_v6")}
    for key, text in outputs.items():
        state[key] = _json_or_text(text) if key in state else text
    return state


def _json_or_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return journal_safe(json.loads(text))
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to keep
        return text


def parse_probe(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` or ``[V6]:PORT`` -> (address, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError as e:
        raise UsageError(f"--probe {text}: give ADDR:PORT or [V6ADDR]:PORT") from e
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--probe {text}: {port!r} is not a port")
    return host, int(port)


def probe(address: str, port: int, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Send to an address the cut must stop, and classify what happened.

    A UDP datagram first: a packet filter that drops it makes ``sendto`` fail at once
    with EPERM, the kernel's own statement that the packet never left (``blocked-locally``;
    a dropped TCP SYN gives no such error, connect just retransmits). ENETUNREACH means
    nothing is reachable that way at all (``no-route``). Then a TCP connect with a short
    timeout: ``connected`` or ``refused`` mean the cut does not hold; ``timeout`` alone
    means packets may have left the host with no answer (no local proof)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    began = time.monotonic_ns()
    udp_outcome, udp_detail = _udp_probe(family, address, port)
    tcp_outcome, tcp_detail = _tcp_probe(family, address, port, timeout)
    if tcp_outcome in ("connected", "refused"):
        outcome = tcp_outcome
    elif udp_outcome in ("blocked-locally", "no-route"):
        outcome = udp_outcome
    else:
        outcome = tcp_outcome
    return {
        "address": address,
        "port": port,
        "outcome": outcome,
        "detail": f"udp: {udp_detail}; tcp: {tcp_detail}",
        "took_ms": (time.monotonic_ns() - began) // 1_000_000,
    }


def _classify(e: OSError) -> tuple[str, str]:
    detail = os.strerror(e.errno) if e.errno else str(e)
    if e.errno in (errno.EPERM, errno.EACCES):
        return "blocked-locally", detail
    if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return "no-route", detail
    if e.errno == errno.ECONNREFUSED:
        return "refused", detail
    return "error", detail


def _udp_probe(family: int, address: str, port: int) -> tuple[str, str]:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.sendto(b"preserve isolation probe", (address, port))
        return "sent", "datagram left the socket"
    except OSError as e:
        return _classify(e)
    finally:
        sock.close()


def _tcp_probe(family: int, address: str, port: int, timeout: float) -> tuple[str, str]:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        return "connected", "a connection was established"
    except TimeoutError:
        return "timeout", f"no answer within {timeout:g} s"
    except OSError as e:
        return _classify(e)
    finally:
        sock.close()


def default_probes(allow: list[AllowEntry], routes: dict[str, Any]) -> list[tuple[str, int]]:
    """Targets that need no outside network and that the cut must block.

    With a default route, a documentation address (routed, never a real peer); without
    one, an unused address on a directly connected subnet, so that a route exists and the
    filter, not the routing table, is what stops the SYN."""
    probes: list[tuple[str, int]] = []
    for family, key, doc in ((4, "routes_v4", "192.0.2.1"), (6, "routes_v6", "2001:db8::1")):
        table = routes.get(key)
        if not isinstance(table, list):
            table = []
        main = [r for r in table if r.get("table", "main") == "main" and r.get("type") != "local"]
        target: str | None
        if any(r.get("dst") == "default" for r in main):
            target = doc
        else:
            target = _on_link_target(family, main, allow, routes.get("addresses"))
        if target and not any(
            ipaddress.ip_address(target) in e.network for e in allow if e.family == family
        ):
            probes.append((target, 9))
    return probes


def _on_link_target(
    family: int, routes: list[dict[str, Any]], allow: list[AllowEntry], addresses: Any
) -> str | None:
    local = set()
    for link in addresses if isinstance(addresses, list) else []:
        for info in link.get("addr_info", []):
            local.add(info.get("local"))
    for route in routes:
        dst = route.get("dst", "")
        if route.get("dev") == "lo" or "/" not in dst or "gateway" in route:
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.version != family or net.is_link_local or net.num_addresses < 4:
            continue
        for offset in range(net.num_addresses - 2, 0, -1):
            candidate = net.network_address + offset
            if str(candidate) in local or any(candidate in e.network for e in allow):
                continue
            return str(candidate)
    return None


class Method:
    """An isolation method. Subclasses fill in ``plan`` and ``check``; the rest is shared.

    ``viable()`` raises MethodError with the reason when the method cannot run here.
    ``priority`` orders the methods ``auto`` may choose (0: never chosen automatically).
    ``proof`` is the set of probe outcomes that confirm this method's cut."""

    name = "base"
    priority = 0
    proof: frozenset[str] = frozenset({"blocked-locally"})
    cuts_responder = False

    def viable(self) -> None:
        raise MethodError("not an isolation method")

    def plan(self, request: Request, runner: Runner, before: dict[str, Any]) -> Plan:
        raise NotImplementedError

    def check(self, plan: Plan, runner: Runner) -> tuple[bool, str]:
        """Are the rules in force exactly as written? (True, detail) or (False, why)."""
        raise NotImplementedError

    def apply(self, plan: Plan, runner: Runner) -> list[str]:
        return runner.run_all(plan.apply, "apply")

    def release(self, plan: Plan, runner: Runner) -> list[str]:
        return runner.run_all(plan.release, "release")
