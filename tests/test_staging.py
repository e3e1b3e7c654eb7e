"""The staging collector on a host planted in a private mount namespace: a web shell under
/var/www, a second web root named only by an nginx configuration, and in /tmp a FIFO, a
symlink to /etc/shadow, a 100 GiB sparse file and an ELF binary; the caps from a profile.
Then the web shell signals one by one, on their own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conftest import journal_records
from hostns import CAPS_PROFILE, caps_profile, run_on_planted_host

from collectors import webshell

SHELL = "<?php if (isset($_REQUEST['c'])) { system($_REQUEST['c']); } ?>\n"
SETUP = (
    """
mkdir -p /var/www/html /etc/nginx/sites-enabled /srv/app/public/uploads
cat > /var/www/html/.cache.php <<'PHP'
"""
    + SHELL
    + """PHP
echo '<?php echo "hello"; ?>' > /var/www/html/index.php
touch -d 2001-01-01 /var/www/html/index.php
printf 'server {\\n  listen 80;\\n  root /srv/app/public;\\n}\\n' > /etc/nginx/sites-enabled/app
for i in 1 2 3; do echo img > /srv/app/public/uploads/p$i.png; done
echo '<?php echo 1; ?>' > /srv/app/public/uploads/thumb.php
mkfifo /tmp/fifo
ln -s /etc/shadow /tmp/shadow-link
truncate -s 100G /tmp/sparse
cp /bin/true /tmp/.x
head -c 300000 /dev/urandom > /tmp/big
echo notes > /dev/shm/notes
head -c 150000 /dev/urandom > /var/tmp/more
"""
    + caps_profile(staging_max_file_bytes=100000, staging_max_total_bytes=250000)
)


def test_staging_and_web_roots_on_a_planted_host(tmp_path: Path) -> None:
    summary, evidence = run_on_planted_host(
        tmp_path, SETUP, "--only", "staging", "--profile", CAPS_PROFILE
    )
    assert summary["status"] == "complete", summary
    listing = {
        r["path"]: r
        for r in map(
            json.loads, (evidence / "artifacts/staging/listing.jsonl").read_text().splitlines()
        )
    }
    assert listing["/tmp/fifo"]["type"] == "fifo" and "copied" not in listing["/tmp/fifo"]
    assert listing["/tmp/shadow-link"] == {**listing["/tmp/shadow-link"], "type": "symlink",
                                           "target": "/etc/shadow"}  # fmt: skip
    assert not (evidence / "artifacts/staging/files/tmp/shadow-link").exists()
    sparse = listing["/tmp/sparse"]
    assert sparse["size"] == 100 * 2**30 and sparse["copied"] == 100000
    assert "staging_max_file_bytes" in sparse["not_copied"]
    copied = sum(r.get("copied", 0) for r in listing.values())
    assert copied <= 250000  # the total cap holds
    assert "staging_max_total_bytes" in listing["/var/tmp/more"]["not_copied"]
    records = journal_records(evidence)
    stored = {r["path"]: r for r in records if r["type"] == "artifact"}
    if "artifacts/staging/files/tmp/sparse" in stored:
        assert stored["artifacts/staging/files/tmp/sparse"]["size"] == 100000
    findings = {(r["rule"], r["source"]["path"]): r for r in records if r.get("event") == "finding"}
    assert ("executable-content-in-staging-dir", "/tmp/.x") in findings  # mode 0755 or not
    assert ("executable-content-in-staging-dir", "/tmp/big") not in findings
    shell = findings[("web-shell-likely", "/var/www/html/.cache.php")]
    assert shell["severity"] == "HIGH" and shell["why"]
    assert set(shell["signals"]) == {"exec-on-request-input", "unlike-neighbours"}
    assert shell["sha256"] == hashlib.sha256(SHELL.encode()).hexdigest()
    scripts = {
        r["path"]: r
        for r in map(
            json.loads, (evidence / "artifacts/staging/webroots.jsonl").read_text().splitlines()
        )
    }
    assert scripts["/var/www/html/index.php"]["signals"] == []
    assert "why_copied" not in scripts["/var/www/html/index.php"]  # old and quiet: hashed only
    thumb = scripts["/srv/app/public/uploads/thumb.php"]
    assert thumb["named_by"] == "/etc/nginx/sites-enabled/app"
    assert thumb["signals"] == ["unlike-neighbours"]  # the only script among the images
    assert ("web-shell-likely", "/srv/app/public/uploads/thumb.php") not in findings


def test_signals_one_at_a_time() -> None:
    quiet = b"<?php echo htmlspecialchars($_GET['q']); ?>"
    assert webshell.signals(quiet, b"search.php", [b"index.php", b"search.php"]) == []
    jsp = b'<% Runtime.getRuntime().exec(request.getParameter("cmd")); %>'
    assert webshell.signals(jsp, b"a.jsp", []) == ["exec-on-request-input"]
    packed = bytes(range(256)) * 8
    assert webshell.signals(packed, b"x.php", [b"index.php"]) == ["high-entropy"]
    assert webshell.signals(b"<?php ?>", b"logo.png.php", []) == ["unlike-neighbours"]
    assert webshell.likely_web_shell(["high-entropy", "unlike-neighbours"])
    assert not webshell.likely_web_shell(["high-entropy"])
