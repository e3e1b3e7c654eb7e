"""A real OpenSSH evidence server for the SFTP sink tests, in network namespaces made
here (never the machine's own network): ``srv`` runs ``sshd -D -e -f CONFIG`` on
10.232.N.1:2222, ``cli`` (10.232.N.2) is where ``preserve`` runs. The upload account is
``nobody``, chrooted to ``root/``, its evidence under ``/evidence``; two client keys: one
allowed to rename (``internal-sftp``) and the drop-box one (``internal-sftp -P ...``),
which may not remove, rename or change what it wrote."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from netns_topology import sh

DENIED = "remove,rename,posix-rename,rmdir,setstat,fsetstat,lsetstat,symlink,hardlink,copy-data"
# Each session starts in /home, not /: a path handled as relative to the session's start
# (a home directory on a real server) lands somewhere else than the absolute one given.
DROPBOX = f'restrict,command="internal-sftp -d /home -P {DENIED}"'
PLAIN = 'restrict,command="internal-sftp -d /home"'
PORT = 2222
NOBODY = 65534


def available() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd)"
    for tool in ("ip", "ssh-keygen", "sftp"):
        if not shutil.which(tool):
            return f"{tool} not installed"
    if not Path("/usr/sbin/sshd").exists():
        return "openssh-server not installed"
    return None


class SftpServer:
    def __init__(self, tmp: Path, root_under: Path = Path("/run"), config: str = "") -> None:
        """``config``: sshd_config lines added to the test's own."""
        self.tmp = tmp
        self._config = config
        self._root_under = root_under  # a root-owned directory not writable by others
        self.root: Path | None = None
        n = secrets.randbelow(200) + 20
        tag = secrets.token_hex(3)
        self.ns = {"srv": f"pvs-{tag}-srv", "cli": f"pvs-{tag}-cli"}
        self.addr = f"10.232.{n}.1"
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self._network(n)
            self._keys()
            self._sshd()
        except BaseException:
            self.close()
            raise

    def _network(self, n: int) -> None:
        for name in self.ns.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns["srv"], "link", "add", "s0", "type", "veth",
           "peer", "name", "c0", "netns", self.ns["cli"])  # fmt: skip
        for role, ifname, last in (("srv", "s0", 1), ("cli", "c0", 2)):
            sh("ip", "-n", self.ns[role], "addr", "add", f"10.232.{n}.{last}/24", "dev", ifname)
            sh("ip", "-n", self.ns[role], "link", "set", ifname, "up")

    def _keys(self) -> None:
        keys = self.tmp / "keys"
        keys.mkdir(parents=True)
        for name in ("host", "plain", "dropbox", "other_host"):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name))
        # A second host key, one ssh does not prefer: a pin of it alone must still work.
        sh("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(keys / "host_ecdsa"))
        self.host_key_pub = keys / "host.pub"
        self.ecdsa_pub = keys / "host_ecdsa.pub"
        self.fingerprint = self._fingerprint(keys / "host.pub")
        self.wrong_fingerprint = self._fingerprint(keys / "other_host.pub")
        self.plain_key, self.dropbox_key = keys / "plain", keys / "dropbox"
        lines = [
            f"{PLAIN} {(keys / 'plain.pub').read_text().strip()}",
            f"{DROPBOX} {(keys / 'dropbox.pub').read_text().strip()}",
        ]
        # The chroot: every component root-owned and not group/world-writable, which
        # rules out /tmp; /run by default (on a disk on some machines: bench_sftp mounts a
        # tmpfs for root_under), and the directory is removed at close. The
        # authorized_keys file is read as the account, so it lives there too.
        self.root = self._root_under / f"{self.ns['srv']}-root"
        self.root.mkdir(mode=0o755)
        self.authorized = self.root / "authorized_keys"
        self.authorized.write_text("\n".join(lines) + "\n")
        (self.root / "home").mkdir(mode=0o755)  # where each session starts
        self.evidence = self.root / "evidence"
        self.evidence.mkdir()
        os.chown(self.evidence, NOBODY, NOBODY)

    @staticmethod
    def _fingerprint(pub: Path) -> str:
        return sh("ssh-keygen", "-lf", str(pub)).stdout.decode().split()[1]

    def _sshd(self) -> None:
        config = self.tmp / "sshd_config"
        config.write_text(
            f"ListenAddress {self.addr}:{PORT}\n"
            f"HostKey {self.tmp}/keys/host\nHostKey {self.tmp}/keys/host_ecdsa\n"
            "PidFile none\nUsePAM no\nStrictModes no\n"
            f"AuthorizedKeysFile {self.authorized}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "AllowUsers nobody\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
            f"ChrootDirectory {self.root}\n"
            "AllowTcpForwarding no\nX11Forwarding no\n" + self._config
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.log = self.tmp / "sshd.log"
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns["srv"],
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        deadline = time.monotonic() + 10
        while b"Server listening" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def url(self, path: str = "/evidence") -> str:
        return f"sftp://nobody@{self.addr}:{PORT}{path}"

    def in_cli(self, *argv: str | os.PathLike[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns["cli"], *map(os.fspath, argv)]

    def known_hosts(self, port: int = PORT) -> Path:
        """A known_hosts file pinning this server's key at ``port`` (the evidence
        listener's, or another sshd given the same host key), for the stock clients."""
        known = self.tmp / f"known_hosts_{port}"
        known.write_text(f"[{self.addr}]:{port} {self.host_key_pub.read_text()}")
        return known

    def sftp_batch(self, key: Path, commands: str) -> subprocess.CompletedProcess[bytes]:
        """The stock OpenSSH client, as the upload account, running ``commands``."""
        known = self.known_hosts()
        argv = self.in_cli(
            "sftp", "-q", "-b", "-", "-P", str(PORT), "-i", key,
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", f"nobody@{self.addr}",
        )  # fmt: skip
        return subprocess.run(argv, input=commands.encode(), capture_output=True, timeout=30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        for name in self.ns.values():
            # A session whose client vanished behind a cut link never ends on its own (and
            # is nobody's process: tests of a run as nobody would see it): ended here.
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", name, check=False)
        if getattr(self, "root", None) is not None:
            shutil.rmtree(self.root, ignore_errors=True)
