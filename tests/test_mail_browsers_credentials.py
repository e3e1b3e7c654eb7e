"""Mail spools, browser histories and credential files on a host planted in a private
mount namespace (tests/hostns.py, with a tmpfs on /home and /root): mailboxes listed,
hashed and copied within the profile's caps (a large one by its newest bytes), a FIFO
and a symlink in the spool listed and never opened; Firefox and Chrome histories copied,
their cookies not, a symlinked browser directory not followed, an oversized history
recorded; cloud and tool credentials by stat and SHA-256, their bytes nowhere."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from conftest import journal_records
from hostns import CAPS_PROFILE, caps_profile, run_on_planted_host

MIB = 1024 * 1024
MAILBOX = "From cron@host Mon Dec  1 00:00:00 2026\nSubject: Cron <root@h> /tmp/.x\n\nok\n"
AWS = "[default]\naws_access_key_id = AKIAPLANTED\naws_secret_access_key = PLANTED-AWS-KEY\n"
SECRETS = (
    b"PLANTED-AWS-KEY",
    b"PLANTED-KUBE-TOKEN",
    b"PLANTED-DOCKER-AUTH",
    b"PLANTED-GPG",
    b"PLANTED-SSH",
)
_PYTHON = Path(os.path.realpath(sys.executable))
# The interpreter may live under /root (pyenv): kept reachable inside the planted home.
_KEEP = (
    Path("/root", _PYTHON.relative_to("/root").parts[0])
    if _PYTHON.is_relative_to("/root")
    else None
)
_ROOT_HOME = (
    f"mkdir /mnt/keep && mount --bind {_KEEP} /mnt/keep && mount -t tmpfs rootshome /root && "
    f"mkdir {_KEEP} && mount --bind /mnt/keep {_KEEP}"
    if _KEEP
    else "mount -t tmpfs rootshome /root"
)
SETUP = f"""
mount -t tmpfs homes /home
{_ROOT_HOME}
echo 'alice:x:1000:1000:Alice:/home/alice:/bin/bash' >> /etc/passwd
cat > /var/mail/root <<'EOF'
{MAILBOX}EOF
python3 -c '
import sqlite3
big = open("/var/mail/alice", "wb")
big.write(b"x" * (3 * {MIB}) + b"From newest@mail\\n")
for path in ("/mnt/places.sqlite", "/mnt/History"):
    db = sqlite3.connect(path)
    db.execute("create table moz_places (id integer primary key, url text)")
    db.execute("insert into moz_places (url) values (?)", ("http://paste.example/raw/x1",))
    db.commit()
    db.close()
'
mkfifo /var/mail/pipe
ln -s /etc/shadow /var/mail/shadow-link
P=/home/alice/.mozilla/firefox/ab12.default-release
mkdir -p $P /home/alice/.config/google-chrome/Default "/home/alice/.config/google-chrome/Profile 1"
cp /mnt/places.sqlite $P/places.sqlite
cp /mnt/History /home/alice/.config/google-chrome/Default/History
echo cookie > /home/alice/.config/google-chrome/Default/Cookies
head -c 2000000 /dev/zero > "/home/alice/.config/google-chrome/Profile 1/History"
ln -s /etc /home/alice/.config/chromium
mkdir -p /root/.aws /home/alice/.kube /home/alice/.docker /home/alice/.gnupg/private-keys-v1.d
mkdir -p /home/alice/.ssh
cat > /root/.aws/credentials <<'EOF'
{AWS}EOF
echo 'users: [{{user: {{token: PLANTED-KUBE-TOKEN}}}}]' > /home/alice/.kube/config
echo '{{"auths": {{"r.example": {{"auth": "PLANTED-DOCKER-AUTH"}}}}}}' \\
  > /home/alice/.docker/config.json
echo PLANTED-GPG > /home/alice/.gnupg/private-keys-v1.d/AB12.key
echo 'ssh-ed25519 AAAA alice' > /home/alice/.ssh/id_ed25519.pub
ln -s /etc/shadow /home/alice/.netrc
printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nPLANTED-SSH\n' > /home/alice/.ssh/id_ed25519
{caps_profile(config_max_file_mib=1)}"""


def _rows(path: Path) -> dict[str, dict]:
    return {r["path"]: r for r in map(json.loads, path.read_bytes().splitlines())}


def test_mail_browsers_and_credentials(tmp_path: Path) -> None:
    summary, evidence = run_on_planted_host(
        tmp_path, SETUP, "--only", "mail,browsers,credentials", "--profile", CAPS_PROFILE
    )
    assert summary["status"] == "complete", summary
    mail = _rows(evidence / "artifacts/mail/listing.jsonl")
    root = mail["/var/mail/root"]
    assert root["sha256"] == hashlib.sha256(MAILBOX.encode()).hexdigest()
    assert root["copied"] == len(MAILBOX) and "not_copied" not in root
    assert (evidence / "artifacts/mail/files/var/mail/root").read_text() == MAILBOX
    alice = mail["/var/mail/alice"]
    assert alice["size"] == 3 * MIB + 17 and alice["copied"] == MIB
    assert "last" in alice["not_copied"]
    tail = (evidence / "artifacts/mail/files/var/mail/alice").read_bytes()
    assert len(tail) == MIB and tail.endswith(b"From newest@mail\n")  # the newest mail
    assert mail["/var/mail/pipe"]["type"] == "fifo" and "sha256" not in mail["/var/mail/pipe"]
    assert mail["/var/mail/shadow-link"]["target"] == "/etc/shadow"
    assert not (evidence / "artifacts/mail/files/var/mail/shadow-link").exists()

    browsers = json.loads((evidence / "artifacts/browsers/histories.json").read_bytes())
    by_path = {r["path"]: r for r in browsers}
    firefox = by_path["/home/alice/.mozilla/firefox/ab12.default-release/places.sqlite"]
    chrome = by_path["/home/alice/.config/google-chrome/Default/History"]
    assert firefox["browser"] == "firefox" and chrome["browser"] == "chrome"
    for row in (firefox, chrome):
        assert row["user"] == "alice"
        copied = (evidence / row["artifact"]).read_bytes()
        assert b"paste.example" in copied and row["sha256"] == hashlib.sha256(copied).hexdigest()
    big = by_path["/home/alice/.config/google-chrome/Profile 1/History"]
    assert big["not_copied"] == "config_max_file_mib" and "artifact" not in big
    assert not list(evidence.rglob("Cookies"))
    records = journal_records(evidence)
    skipped = {r["source"]["path"]: r for r in records if r["type"] == "skipped" and "source" in r}
    assert "symlink" in skipped["/home/alice/.config/chromium"]["reason"]
    assert not (evidence / "artifacts/browsers/home/alice/.config/chromium").exists()

    for path, what, content in (
        ("/root/.aws/credentials", "aws", AWS.encode()),
        ("/home/alice/.kube/config", "kubernetes", None),
        ("/home/alice/.docker/config.json", "docker-registry", None),
        ("/home/alice/.gnupg/private-keys-v1.d/AB12.key", "gnupg", b"PLANTED-GPG\n"),
        ("/home/alice/.ssh/id_ed25519", "ssh-private-key", None),
    ):
        r = skipped[path]
        assert r["secret"] is True and r["credential"] == what and r["stat"]["size"] > 0, r
        if content is not None:
            assert r["sha256"] == hashlib.sha256(content).hexdigest()
    assert "/home/alice/.ssh/id_ed25519.pub" not in skipped  # a public key is no secret
    netrc = skipped["/home/alice/.netrc"]  # a symlink: not followed, nothing hashed
    assert "symlink" in netrc["reason"] and "sha256" not in netrc
    for f in evidence.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not [s for s in SECRETS if s in data], f
