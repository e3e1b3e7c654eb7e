"""Likely secrets in a quoted command line: each form replaced by [REDACTED], the option
or name kept, harmless lines left as they are, and a second pass changing nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import collect_json, preserve

from collectors.redact import MARK, redact, redact_fields

HIDDEN = [
    ("mysql -uroot -pS3cret shop", "mysql -uroot -p[REDACTED] shop"),
    ("mysqldump --password=S3cret shop", "mysqldump --password=[REDACTED] shop"),
    ("mariadb -h db -P3306 -pS3cret", "mariadb -h db -P3306 -p[REDACTED]"),
    ("curl -u admin:hunter2 http://x/a | sh", "curl -u admin:[REDACTED] http://x/a | sh"),
    ("curl -su admin:hunter2 http://x", "curl -su admin:[REDACTED] http://x"),
    ("curl --user 'admin:hunter2' http://x", "curl --user 'admin:[REDACTED]' http://x"),
    ("sshpass -p 'S3 cret' ssh root@h", "sshpass -p [REDACTED] ssh root@h"),
    ("export AWS_SECRET_ACCESS_KEY=wJalrX/K7MDENG", "export AWS_SECRET_ACCESS_KEY=[REDACTED]"),
    ("PGPASSWORD=pw psql -h db", "PGPASSWORD=[REDACTED] psql -h db"),
    ("export GITHUB_TOKEN=\"abc def\"", "export GITHUB_TOKEN=[REDACTED]"),
    ("git clone https://bob:pa55@git.example/r", "git clone https://bob:[REDACTED]@git.example/r"),
    ("psql postgresql://app:pw@db/shop", "psql postgresql://app:[REDACTED]@db/shop"),
    ("redis-cli -h r -a foobared", "redis-cli -h r -a [REDACTED]"),
    ("ldapsearch -x -D cn=admin -w adminpw", "ldapsearch -x -D cn=admin -w [REDACTED]"),
    ("smbclient //h/s -U admin%Passw0rd", "smbclient //h/s -U admin%[REDACTED]"),
    ("openssl rsa -passin pass:abc -in k", "openssl rsa -passin pass:[REDACTED] -in k"),
    ("docker login -u me -p s3cr3t reg", "docker login -u me -p [REDACTED] reg"),
    ("wget --http-password=pw http://h/f", "wget --http-password=[REDACTED] http://h/f"),
    ("vault login --token s.abcdef", "vault login --token [REDACTED]"),
    ('curl -H "Authorization: Bearer abc.def" u', 'curl -H "Authorization: Bearer [REDACTED]" u'),
    ("echo 'bob:newpass' | chpasswd", "echo 'bob:[REDACTED]' | chpasswd"),
    ("echo hunter2 | sudo -S id", "echo [REDACTED] | sudo -S id"),
    ("aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE", "aws configure set "
     "aws_access_key_id [REDACTED]"),
    ("git push https://ghp_" + "a" * 36 + "@github.com/x", "git push https://[REDACTED]@github.com/x"),
]  # fmt: skip
KEPT = [
    "mysql -u root -p",  # asks for the password
    "mysql -u root -P 3306 shop",
    "wget -O- http://x.example | bash",
    "curl http://example.com/a?x=1 -o /tmp/a",
    "ls -la /tmp",
    "chown root:root /etc/passwd",
    "ssh -p 2222 root@203.0.113.9",
    "scp -P 2222 f root@h:/tmp",
]


@pytest.mark.parametrize(("line", "shown"), HIDDEN)
def test_a_typed_secret_is_replaced(line: str, shown: str) -> None:
    redacted, count = redact(line)
    assert (redacted, count) == (shown, 1)
    assert redact(redacted) == (redacted, 0)  # a second pass: nothing more to hide


@pytest.mark.parametrize("line", KEPT)
def test_a_harmless_line_is_left_alone(line: str) -> None:
    assert redact(line) == (line, 0)


def test_fields_text_and_lists_are_redacted_numbers_kept() -> None:
    fields = {"line": "mysql -pX", "targets": ["/tmp/a", "https://u:p@h"], "line_no": 3}
    shown, count = redact_fields(fields)
    assert count == 2 and shown["line_no"] == 3 and MARK in shown["line"]
    assert shown["targets"] == ["/tmp/a", f"https://u:{MARK}@h"]
    assert fields["line"] == "mysql -pX"  # the fact the rules judged is not changed


def test_a_running_command_line_is_redacted_in_the_report(tmp_path: Path) -> None:
    """A real process started with a password on its command line (from /tmp: a red
    flag, so the report lists it as a finding and on the timeline): its argv is evidence
    in processes.jsonl, the report shows it redacted."""
    binary = tmp_path / "mysqld-helper"
    shutil.copy(sys.executable, binary)
    held = subprocess.Popen(
        [binary, "-c", "import time; time.sleep(120)", "mysql", "-uroot", "-pPLANTEDPW99"]
    )
    try:
        summary = collect_json(tmp_path / "out", "--only", "processes")
    finally:
        held.kill()
        held.wait()
    evidence = Path(summary["evidence_dir"])
    listed = (evidence / "artifacts/volatile/processes.jsonl").read_bytes()
    assert b"PLANTEDPW99" in listed  # the evidence keeps it as the kernel gave it
    for fmt in ("md", "html", "json"):
        report = preserve("report", evidence, "--format", fmt)
        assert report.returncode == 0, report.stderr.decode()
        assert b"PLANTEDPW99" not in report.stdout, fmt
        assert b"-p[REDACTED]" in report.stdout.replace(b"\\[", b"[").replace(b"\\]", b"]"), fmt
