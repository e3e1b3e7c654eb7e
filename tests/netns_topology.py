"""A throw-away network of namespaces for the isolation tests. Never touches the root
namespace's configuration: every link, address and rule lives inside namespaces made
here, and ``close()`` deletes them all (the tests call it even on failure).

    other (10.231.2.2) ---- host (10.231.2.1 | 10.231.1.1) ---- responder (10.231.1.2)
                             host (10.231.3.1) ---- far (10.231.3.2)

IPv6 on the same links: fd00:231:N::1 (host) and fd00:231:N::2. ``far`` is reached from
``other`` through ``host`` (forwarding on), to show forwarded traffic is dropped."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

from conftest import PRESERVE_ARGV, ROOT

SERVER = r"""
import socket, sys, threading
def tcp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", int(sys.argv[1]))); s.listen(50)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    while True:
        d = c.recv(4096)
        if not d: return
        c.sendall(d)
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", int(sys.argv[1]) + 1))
    while True:
        d, a = s.recvfrom(4096)
        try:
            s.sendto(d, a)
        except OSError:  # EPERM while the cut drops our reply: keep serving
            pass
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
tcp()
"""

CLIENT = r"""
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]) if len(sys.argv) > 4 else 1.0)
if len(sys.argv) > 5:  # a chosen source port, e.g. 53 to pose as a DNS reply
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", int(sys.argv[5])))
try:
    if kind == "tcp":
        s.connect((addr, port)); s.sendall(b"hi"); ok = s.recv(10) == b"hi"
    else:
        s.sendto(b"hi", (addr, port)); ok = s.recvfrom(10)[0] == b"hi"
except OSError:
    ok = False
sys.exit(0 if ok else 1)
"""

HELD = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.settimeout(1.0)
print("connected", flush=True)
for line in sys.stdin:
    try:
        s.sendall(b"ping"); ok = s.recv(10) == b"ping"
    except OSError:
        ok = False
    print("ok" if ok else "fail", flush=True)
"""

PORT = 7000


def sh(
    *argv: str, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(argv, capture_output=True, timeout=30, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.decode()}")
    return done


class Topology:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.ns = {r: f"pv5-{tag}-{r}" for r in ("host", "resp", "other", "far")}
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def ex(self, role: str, *argv: str, check: bool = True, input: bytes | None = None):
        return sh("ip", "netns", "exec", self.ns[role], *argv, check=check, input=input)

    def _build(self) -> None:
        for name in self.ns.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
            # No duplicate address detection: link-local addresses usable at once.
            sh("ip", "netns", "exec", name, "sysctl", "-qw",
               "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")  # fmt: skip
        for n, peer in ((1, "resp"), (2, "other"), (3, "far")):
            host_if, peer_if = f"h{n}", f"p{n}"
            sh("ip", "-n", self.ns["host"], "link", "add", host_if, "type", "veth",
               "peer", "name", peer_if, "netns", self.ns[peer])  # fmt: skip
            for role, ifname, last in (("host", host_if, 1), (peer, peer_if, 2)):
                ns = self.ns[role]
                sh("ip", "-n", ns, "addr", "add", f"10.231.{n}.{last}/24", "dev", ifname)
                sh(
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    f"fd00:231:{n}::{last}/64",
                    "dev",
                    ifname,
                    "nodad",
                )
                sh("ip", "-n", ns, "link", "set", ifname, "up")
        sh("ip", "-n", self.ns["other"], "route", "add", "10.231.3.0/24", "via", "10.231.2.1")
        sh("ip", "-n", self.ns["far"], "route", "add", "default", "via", "10.231.3.1")
        sh(
            "ip",
            "-n",
            self.ns["other"],
            "-6",
            "route",
            "add",
            "fd00:231:3::/64",
            "via",
            "fd00:231:2::1",
        )
        sh("ip", "-n", self.ns["far"], "-6", "route", "add", "default", "via", "fd00:231:3::1")
        self.ex("host", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ex("host", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for role in ("host", "far"):
            self.start_server(role)

    def start_server(self, role: str, port: int = PORT) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[role], sys.executable, "-c", SERVER, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"

    def can(
        self,
        role: str,
        addr: str,
        kind: str = "tcp",
        port: int = PORT,
        timeout: float = 1.0,
        source_port: int | None = None,
    ) -> bool:
        if kind == "udp":
            port += 1
        argv = [sys.executable, "-c", CLIENT, kind, addr, str(port), str(timeout)]
        if source_port is not None:
            argv.append(str(source_port))
        return self.ex(role, *argv, check=False).returncode == 0

    def hold(self, role: str, addr: str) -> subprocess.Popen[bytes]:
        """An established TCP connection, poked on demand: write a line, read ok/fail."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[role], sys.executable, "-c", HELD, addr, str(PORT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"connected"
        return proc

    @staticmethod
    def poke(proc: subprocess.Popen[bytes]) -> bool:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"x\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip() == b"ok"

    def preserve(self, *args: str, env: dict[str, str] | None = None, role: str = "host"):
        """The real CLI, run inside a namespace; returns the finished process and its time."""
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }
        began = time.monotonic()
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns[role], *PRESERVE_ARGV, *args],
            capture_output=True, timeout=120, cwd=ROOT, env=full_env,
        )  # fmt: skip
        return done, time.monotonic() - began

    def ruleset(self, role: str = "host") -> str:
        return self.ex(role, "nft", "list", "ruleset").stdout.decode()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
