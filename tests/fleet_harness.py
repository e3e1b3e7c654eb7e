"""A fleet on one machine for the Ansible fleet run: the evidence server of
tests/sftp_server.py (``srv``, the drop-box account) and N "hosts", each in its own
network, UTS and mount namespace, with its own hostname, a read-only root (every mount
but /proc, /sys and /dev remounted read-only, so any write to a host's disk fails) and a
fresh tmpfs /dev/shm, each running ``sshd`` for root, or (``sudo_hosts``) for an
unprivileged account that may only ``sudo`` to root (NOPASSWD), its passwd, group and
sudoers entries bound over those files in that host's mount namespace only (the
machine's /etc is never changed). The controller is the server's
``cli`` namespace: a bridge there joins the server and every host on 10.232.N.0/24, and
the real ``ansible-playbook`` runs in it. Nothing of the machine's own network or mounts
is touched; ``close()`` removes every namespace."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import ROOT
from netns_topology import sh
from sftp_server import SftpServer

PLAYBOOK = ROOT / "packaging" / "ansible" / "preserve-fleet.yml"
ANSIBLE = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible-playbook"
# Run inside each host's new mount namespace, before sshd: the hostname, a read-only
# root and a tmpfs /dev/shm. A mount that cannot be made read-only stops the host.
HOST_SETUP = r"""
set -eu
hostname "$1"; shift
while [ "$1" = --bind ]; do mount --bind "$2" "$3"; shift 3; done
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r mp; do
    case $mp in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    [ -d "$mp" ] || [ -f "$mp" ] || continue
    mount -o remount,bind,ro "$mp"
done
mount -t tmpfs -o size=768m,mode=1777 fleet-shm /dev/shm
for d in / /tmp /root /var/tmp /run "$PWD"; do
    if (: > "$d/.fleet-probe") 2>/dev/null; then echo "$d is writable" >&2; exit 9; fi
done
exec "$@"
"""


# The unprivileged login of a sudo host: a uid with no rights of its own, home on the
# read-only root (so anything Ansible tried to keep there would fail the run).
SUDO_USER, SUDO_UID = "examiner", 1500
SUDOERS = f"""Defaults env_reset
Defaults !lecture
Defaults !syslog
root ALL=(ALL:ALL) ALL
{SUDO_USER} ALL=(root) NOPASSWD: ALL
"""


def ansible_available() -> str | None:
    if not ANSIBLE.exists():
        return f"ansible-core not installed ({ANSIBLE}); pip install -e '.[test]'"
    return None


class FleetHost:
    def __init__(self, fleet: Fleet, index: int, name: str, sudo: bool = False) -> None:
        self.name = name
        self.login = SUDO_USER if sudo else "root"
        self.binds = self._sudo_files(fleet.tmp / f"etc-{name}") if sudo else []
        self.ns = f"{fleet.server.ns['srv'][:-4]}-h{index}"
        self.addr = f"{fleet.prefix}.{10 + index}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = fleet.tmp / f"sshd-{name}.log"
        keys = fleet.tmp / "keys"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name))
        self.host_pub = (keys / f"{name}.pub").read_text().split()[:2]
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        ext, br = f"h{index}e", f"h{index}b"
        sh("ip", "-n", self.ns, "link", "add", ext, "type", "veth",
           "peer", "name", br, "netns", fleet.ctl)  # fmt: skip
        sh("ip", "-n", fleet.ctl, "link", "set", br, "master", "br0", "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{self.addr}/24", "dev", ext)
        sh("ip", "-n", self.ns, "link", "set", ext, "up")
        config = fleet.tmp / f"sshd_config-{name}"
        config.write_text(
            f"ListenAddress {self.addr}:22\nHostKey {keys / name}\n"
            "PidFile none\nUsePAM no\nStrictModes no\n"
            + (
                f"AuthorizedKeysFile {fleet.controller_key}.pub\n"
                if not sudo  # read as the account, which may not enter pytest's tmp
                else "AuthorizedKeysFile none\nAuthorizedKeysCommandUser root\n"
                f"AuthorizedKeysCommand /bin/cat {fleet.controller_key}.pub\n"
            )
            + "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"PermitRootLogin prohibit-password\nAllowUsers {self.login}\n"
            "Subsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        )
        self.config = config

    @staticmethod
    def _sudo_files(etc: Path) -> list[str]:
        """passwd, group and sudoers for this host alone, as ``--bind SRC DST`` args."""
        etc.mkdir()
        (etc / "passwd").write_text(
            Path("/etc/passwd").read_text()
            + f"{SUDO_USER}:*:{SUDO_UID}:{SUDO_UID}:Fleet examiner:/:/bin/sh\n"
        )
        (etc / "group").write_text(Path("/etc/group").read_text() + f"{SUDO_USER}:x:{SUDO_UID}:\n")
        (etc / "sudoers").write_text(SUDOERS)
        (etc / "sudoers").chmod(0o440)  # sudo refuses a sudoers file anyone may write
        binds: list[str] = []
        for name in ("passwd", "group", "sudoers"):
            binds += ["--bind", str(etc / name), f"/etc/{name}"]
        return binds

    def start(self) -> None:
        argv = [
            "ip", "netns", "exec", self.ns, "unshare", "--uts", "--mount",
            "--propagation", "private", "sh", "-c", HOST_SETUP, "host-setup", self.name,
            *self.binds, "/usr/sbin/sshd", "-D", "-e", "-f", str(self.config),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        deadline = time.monotonic() + 15
        while b"Server listening" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {self.name} did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def enter(self, *argv: str | os.PathLike[str]) -> list[str]:
        """``argv`` inside this host: its network, UTS and (read-only) mount namespace."""
        assert self.proc is not None
        pid = str(self.proc.pid)
        return ["nsenter", "-t", pid, "-n", "-u", "-m", *map(os.fspath, argv)]

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.ns).stdout.decode().split()
        return [int(p) for p in out]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        for pid in self.pids() if self.proc is not None else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


class Fleet:
    def __init__(
        self,
        tmp: Path,
        names: list[str],
        sudo_hosts: tuple[str, ...] = (),
        server_config: str = "",
    ) -> None:
        """``server_config``: sshd_config lines for the evidence server."""
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.hosts: list[FleetHost] = []
        self.server = SftpServer(tmp / "srv", config=server_config)
        try:
            self.ctl = self.server.ns["cli"]
            self.prefix = self.server.addr.rsplit(".", 1)[0]
            # The controller's address moves from its veth to a bridge the hosts join.
            sh("ip", "-n", self.ctl, "addr", "flush", "dev", "c0")
            sh("ip", "-n", self.ctl, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.ctl, "link", "set", "c0", "master", "br0")
            sh("ip", "-n", self.ctl, "addr", "add", f"{self.prefix}.2/24", "dev", "br0")
            sh("ip", "-n", self.ctl, "link", "set", "br0", "up")
            keys = tmp / "keys"
            keys.mkdir()
            self.controller_key = keys / "controller"
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.controller_key))
            for i, name in enumerate(names, start=1):
                self.hosts.append(FleetHost(self, i, name, sudo=name in sudo_hosts))
            for host in self.hosts:
                host.start()
            self.known_hosts = tmp / "known_hosts"
            self.known_hosts.write_text(
                "".join(f"{h.addr} {' '.join(h.host_pub)}\n" for h in self.hosts)
            )
            self.home = tmp / "controller-home"
            self.home.mkdir()
        except BaseException:
            self.close()
            raise

    def host(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)

    def inventory(
        self,
        host_vars: dict[str, dict[str, str]] | None = None,
        down: tuple[str, ...] = (),
        group_vars: dict[str, str] | None = None,
    ) -> Path:
        """A YAML (JSON) inventory of the hosts, plus ``down`` names at addresses where
        nothing answers."""
        ssh_args = (
            f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
            "-o IdentitiesOnly=yes -o ConnectTimeout=5"
        )
        entries: dict[str, dict[str, str]] = {}
        for h in self.hosts:
            entries[h.name] = {"ansible_host": h.addr}
        for i, name in enumerate(down):
            entries[name] = {"ansible_host": f"{self.prefix}.{200 + i}"}
        for name, extra in (host_vars or {}).items():
            entries[name].update(extra)
        inventory = {
            "all": {
                "hosts": entries,
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(self.controller_key),
                    "ansible_ssh_common_args": ssh_args,
                    **(group_vars or {}),
                },
            }
        }
        path = self.tmp / f"inventory-{len(list(self.tmp.glob('inventory-*')))}.yml"
        path.write_text(json.dumps(inventory, indent=1))
        return path

    def extra_vars(self, kit: Path, summary: Path, **overrides: str) -> dict[str, str]:
        values = {
            "preserve_kit": str(kit),
            "preserve_sink": self.server.url(),
            "preserve_sink_host_key": self.server.fingerprint,
            "preserve_sink_key": str(self.server.dropbox_key),
            "preserve_case": "IR-FLEET-1",
            "preserve_examiner": "Fleet Examiner",
            "preserve_summary": str(summary),
        }
        values.update(overrides)
        return values

    def playbook_argv(self, inventory: Path, extra: dict[str, str], *more: str) -> list[str]:
        argv = ["ip", "netns", "exec", self.ctl, "env", *self.env(), str(ANSIBLE),
                "-i", str(inventory), str(PLAYBOOK), "-f", "10", *more]  # fmt: skip
        for key, value in extra.items():
            # As an operator types it: -e key=value, quoted when the value has spaces
            # (-e 'preserve_examiner="A. Admin"'), which Ansible's key=value parser needs.
            argv += ["-e", f"{key}={json.dumps(value) if ' ' in value else value}"]
        return argv

    def env(self) -> list[str]:
        """The controller's environment: Ansible's own files in the test's directory."""
        home = self.home
        return [
            f"HOME={home}",
            f"PWD={self.tmp}",  # the shell's, as when an operator runs it (cwd is tmp)
            f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}",
            "LC_ALL=C.UTF-8",
            f"ANSIBLE_HOME={home / '.ansible'}",
            f"ANSIBLE_LOCAL_TEMP={home / 'tmp'}",
            f"ANSIBLE_SSH_CONTROL_PATH_DIR={home / 'cp'}",
            "ANSIBLE_NOCOLOR=1",
            "ANSIBLE_RETRY_FILES_ENABLED=0",
        ]

    def run(
        self, inventory: Path, extra: dict[str, str], *more: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.playbook_argv(inventory, extra, *more),
            capture_output=True,
            timeout=timeout,
            cwd=self.tmp,
        )

    def close(self) -> None:
        for host in self.hosts:
            host.stop()
            sh("ip", "netns", "del", host.ns, check=False)
        self.server.close()
        shutil.rmtree(self.tmp / "controller-home", ignore_errors=True)
