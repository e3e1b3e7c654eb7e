"""``preserve report``: made from real evidence collected here, then read back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import collect_json, journal_records, preserve, verify
from evidence_factory import copy_evidence, forge
from report_helpers import colours, utmp_record, write_auth_log

from manifests.signing import Signer

# The planted login an hour before the run, on the minute: the timeline draws only the
# days before the collection, so a fixed date would age out of the picture.
WHEN = (int(time.time()) - 3600) // 60 * 60
WHEN_Z = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(WHEN))


def _syslog(offset: int) -> str:
    """An RFC 3339 auth.log stamp ``offset`` seconds from ``WHEN``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime(WHEN + offset))


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A collected evidence directory holding a wtmp with a login, an auth log with an
    accepted and two failed ssh logins, a file modified just now and an old one."""
    src = tmp_path / "host"
    (src / "var/log").mkdir(parents=True)
    (src / "var/log/wtmp").write_bytes(utmp_record("mallory", "203.0.113.9", "203.0.113.9", WHEN))
    write_auth_log(
        src / "var/log/auth.log",
        [
            f"{_syslog(-59)} web01 sshd[900]: Failed password for root "
            "from 198.51.100.4 port 40000 ssh2",
            f"{_syslog(-57)} web01 sshd[901]: Failed password for invalid "
            "user admin from 198.51.100.4 port 40002 ssh2",
            f"{_syslog(0)} web01 sshd[902]: Accepted publickey for "
            "mallory from 203.0.113.9 port 50022 ssh2",
        ],
    )
    (src / "www").mkdir()
    (src / "www/shell.php").write_text("<?php system($_GET['c']); ?>\n")
    (src / "www/old.html").write_text("old\n")
    (src / "www/<script>alert(1)<b>.php").write_text("hostile name\n")
    os.utime(src / "www/old.html", (946684800, 946684800))  # 2000-01-01
    summary = collect_json(
        tmp_path / "out",
        "--only",
        "files",
        "--path",
        src,
        "--case",
        "IR-7",
        "--examiner",
        "A. Admin",
    )
    return Path(summary["evidence_dir"])


def report(evidence: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
    return preserve("report", evidence, *args)


def report_json(evidence: Path, *args: str, expect: int = 0) -> dict:
    result = report(evidence, "--format", "json", *args)
    assert result.returncode == expect, result.stderr.decode()
    return json.loads(result.stdout)


def artifact_seq(evidence: Path, suffix: str) -> tuple[str, int]:
    for r in journal_records(evidence):
        if r["type"] == "artifact" and r["path"].endswith(suffix):
            return r["path"], r["seq"]
    raise AssertionError(f"no artifact ending {suffix}")


def test_intact_report_has_verdict_custody_and_transfer(planted: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    env = {"PRESERVE_KEY_PASSPHRASE": "pw for the lab key"}
    assert preserve("keygen", "--out", keys, "--name", "lab", env=env).returncode == 0
    handed = preserve(
        "custody", planted, "--to", "Forensic Lab", "--key", keys / "lab.key", env=env
    )
    assert handed.returncode == 0, handed.stderr.decode()
    result = report(planted, "--format", "md")
    assert result.returncode == 0, result.stderr.decode()
    md = result.stdout.decode()
    lines = md.splitlines()
    # the summary first, then the verdict line, before any details
    at = lines.index("## Summary")
    assert at < 4 and "The evidence is intact" in lines[at + 2]
    assert lines[at + 4].startswith("**Verification: INTACT.**")
    start = journal_records(planted)[0]
    fp = start["signer"]["fingerprint"]
    assert " ".join(fp[i : i + 4] for i in range(0, 64, 4)) in md
    assert "Case: IR-7; examiner: A. Admin" in md
    assert "| 2 | Forensic Lab |" in md
    transfer = next(r for r in journal_records(planted) if r["type"] == "transfer")
    seals = [r for r in journal_records(planted) if r["type"] == "seal"]
    for seal in seals:
        assert f"- seq {seal['seq']} " in md
    data = report_json(planted)
    assert data["verification"]["ok"] is True
    assert data["custody"]["transfers"][0]["seq"] == transfer["seq"]
    assert data["custody"]["transfers"][0]["to"] == "Forensic Lab"
    events = {(e["lane"], e["seq"]) for e in data["timeline"]["events"]}
    assert ("custody", transfer["seq"]) in events
    assert all(("custody", s["seq"]) in events for s in seals)


def test_tampered_evidence_says_failed_in_every_section(planted: Path, tmp_path: Path) -> None:
    evidence = copy_evidence(planted, tmp_path / "copy")
    shell = next(evidence.rglob("shell.php"))
    os.chmod(shell, 0o644)
    shell.write_text("<?php echo 'nothing to see'; ?>\n")
    md = report(evidence, "--format", "md")
    assert md.returncode == 1
    assert b"FAILED verification" in md.stderr
    text = md.stdout.decode()
    assert text.splitlines()[2].startswith("> **FAILED VERIFICATION**")
    assert "shell.php" in text
    sections = text.split("\n## ")[1:]
    assert len(sections) >= 6
    for section in sections:
        assert "**FAILED VERIFICATION**" in section, section[:80]
    html = report(evidence, "--format", "html").stdout.decode()
    parts = html.split("<section>")[1:]
    assert len(parts) >= 6 and all('class="fail"' in p for p in parts)
    assert 'class="stamp"' in html  # repeated on every printed page
    data = json.loads(report(evidence, "--format", "json").stdout)
    assert data["verification"]["ok"] is False
    assert any("shell.php" in p for p in data["verification"]["problems"])
    files = next(f for f in data["findings"] if f["category"] == "files")
    assert [p for p in files["unverified"] if p.endswith("shell.php")]
    intact = next(f for f in data["findings"] if f["category"] == "logins")
    assert intact["unverified"] == []
    assert "UNVERIFIED: rests on" in text


def test_logins_from_wtmp_and_auth_log_link_their_records(planted: Path) -> None:
    data = report_json(planted)
    wtmp_path, wtmp_seq = artifact_seq(planted, "var/log/wtmp")
    auth_path, auth_seq = artifact_seq(planted, "var/log/auth.log")
    logins = [f for f in data["findings"] if f["category"] == "logins"]
    from_wtmp = [f for f in logins if f["refs"] and f["refs"][0].get("artifact") == wtmp_path]
    assert from_wtmp and from_wtmp[0]["refs"][0]["seq"] == wtmp_seq
    assert "mallory from 203.0.113.9" in from_wtmp[0]["title"]
    assert from_wtmp[0]["time"] == WHEN_Z
    accepted = [f for f in logins if "auth log: ssh accepted" in f["title"]]
    assert accepted[0]["refs"][0] == {"artifact": auth_path, "seq": auth_seq, "line": 3}
    failed = [f for f in logins if "failed login" in f["title"]]
    assert failed and failed[0]["title"].startswith("2 failed login(s) from 1 address")
    assert "198.51.100.4: 2" in failed[0]["details"][0]
    lanes = [(e["lane"], e["time"]) for e in data["timeline"]["events"]]
    assert ("logins", WHEN_Z) in lanes
    assert "logs" in {lane for lane, _ in lanes}  # first/last entries of auth.log


def test_recently_modified_files_and_timeline(planted: Path) -> None:
    data = report_json(planted)
    shell_path, shell_seq = artifact_seq(planted, "www/shell.php")
    files = next(f for f in data["findings"] if f["category"] == "files")
    assert {"artifact": shell_path, "seq": shell_seq} in files["refs"]
    assert not any(r["artifact"].endswith("old.html") for r in files["refs"])
    old = [e for e in data["timeline"]["events"] if e["text"].endswith("www/old.html")]
    assert old and old[0]["time"] == "2000-01-01 00:00:00Z" and old[0]["lane"] == "files"
    times = [int(e["time_ns"]) for e in data["timeline"]["events"]]
    assert times == sorted(times)
    assert data["not_assessed"]["processes"].startswith("not collected")


def test_deadlines_count_from_detected_at(planted: Path, tmp_path: Path) -> None:
    data = report_json(planted, "--detected-at", "2026-01-05T10:00:00Z")
    d = data["deadlines"]
    assert "not legal advice" in d["disclaimer"]
    due = {i["id"]: i["due"] for i in d["items"]}
    assert due["eu-gdpr-authority"] == "2026-01-08 10:00:00Z"
    assert due["jp-ppc-preliminary"] == "2026-01-10 10:00:00Z"
    assert due["jp-ppc-final"] == "2026-02-04 10:00:00Z"
    assert due["jp-ppc-final-malicious"] == "2026-03-06 10:00:00Z"
    assert due["jp-individuals"] is None and due["eu-gdpr-individuals"] is None
    assert "police" in due
    jst = report_json(planted, "--detected-at", "2026-01-05T19:00:00+09:00")["deadlines"]
    assert jst["detected_at"] == "2026-01-05 10:00:00Z"
    default = report_json(planted)["deadlines"]
    start = journal_records(planted)[0]["time"]
    assert default["detected_at"] == start[:10] + " " + start[11:19] + "Z"
    md = report(planted, "--format", "md", "--detected-at", "2026-01-05T10:00:00Z")
    assert b"Guidance, not legal advice" in md.stdout and b"- [ ] **" in md.stdout

    custom = tmp_path / "au.toml"
    custom.write_text(
        '[[deadline]]\nid = "au-ndb"\njurisdiction = "Australia (NDB)"\n'
        'to = "OAIC"\nwhat = "Assessment of a suspected breach"\ndue_days = 30\n'
    )
    data = report_json(planted, "--deadlines", str(custom), "--detected-at", "2026-01-05")
    assert [i["id"] for i in data["deadlines"]["items"]] == ["au-ndb"]
    assert data["deadlines"]["items"][0]["due"] == "2026-02-04 00:00:00Z"
    custom.write_text('[[deadline]]\nid = "x"\n')
    bad = report(planted, "--deadlines", custom)
    assert bad.returncode == 2 and b"needs a text field 'jurisdiction'" in bad.stderr
    assert b"Traceback" not in bad.stderr
    bad_time = report(planted, "--detected-at", "yesterday")
    assert bad_time.returncode == 2 and b"not a time" in bad_time.stderr


def test_worksheet_marks_gaps(planted: Path) -> None:
    data = report_json(planted)
    rows = {w["question"]: w for w in data["worksheet"]}
    assert list(rows) == ["When", "Where", "What", "Who", "How", "Why"]
    assert all(w["gaps"] and all(g.startswith("GAP: ") for g in w["gaps"]) for w in rows.values())
    assert any("mallory" in x for x in rows["Who"]["evidence"])


def test_output_inside_the_evidence_is_refused(planted: Path, tmp_path: Path) -> None:
    result = report(planted, "-o", planted / "report.html", "--format", "html")
    assert result.returncode == 2 and b"inside the evidence directory" in result.stderr
    assert not (planted / "report.html").exists()
    out = tmp_path / "report.html"
    ok = report(planted, "-o", out, "--format", "html")
    assert ok.returncode == 0 and out.read_bytes().startswith(b"<!DOCTYPE html>")
    assert verify(planted).returncode == 0
    assert report(tmp_path).returncode == 2


def _with_records(evidence: Path, tmp_path: Path, new: list[dict], argv: list | None = None):
    """A re-signed copy of ``evidence`` whose journal has ``new`` records before 'end'
    (the journal format of the isolation hook, issue 5), as a forger would build it."""
    copy = copy_evidence(evidence, tmp_path / "forged")

    def mutate(records: list[dict]) -> None:
        at = next(i for i, r in enumerate(records) if r["type"] == "end")
        base = {k: records[at][k] for k in ("time", "clock", "mono_ns")}
        records[at:at] = [{"seq": 0, "prev": "", **base, **r} for r in new]
        if argv is not None:
            records[0]["argv"] = argv

    forge(copy, Signer.generate_ephemeral(), mutate)
    assert verify(copy).returncode == 0
    return copy


def test_isolation_actions_and_their_verification(planted: Path, tmp_path: Path) -> None:
    failed = _with_records(
        planted,
        tmp_path,
        [
            {"type": "action", "action": "isolation-plan", "method": "nftables"},
            {
                "type": "action",
                "action": "isolation-command",
                "argv": ["/usr/sbin/nft", "-f", "-"],
                "exit_code": 0,
            },
            {
                "type": "action",
                "action": "isolation-verify",
                "rules_ok": True,
                "confirmed": False,
                "probes": [{"target": "192.0.2.1:443", "outcome": "connected"}],
            },
            {
                "type": "action",
                "action": "isolation-applied",
                "status": "not-confirmed",
                "method": "nftables",
                "cut_at": "2026-11-27T05:00:00.000000000Z",
            },
        ],
    )
    data = report_json(failed)
    iso = next(f for f in data["findings"] if f["category"] == "isolation")
    seqs = [r["seq"] for r in journal_records(failed) if r["type"] == "action"]
    assert iso["severity"] == "high" and "NOT verified" in iso["title"]
    assert [r["seq"] for r in iso["refs"]] == seqs
    assert any("192.0.2.1:443 connected" in d for d in iso["details"])
    assert any("/usr/sbin/nft -f -" in d for d in iso["details"])

    asked = _with_records(planted, tmp_path / "b", [], argv=["preserve", "--isolate"])
    iso = next(f for f in report_json(asked)["findings"] if f["category"] == "isolation")
    assert iso["severity"] == "high" and "no isolation action" in iso["title"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_html_is_self_contained_and_its_screenshot_shows_the_timeline(
    planted: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    assert report(planted, "--format", "html", "-o", page).returncode == 0
    html = page.read_text()
    for external in ("<script", "src=", "href=", "@import", "url("):
        assert external not in html
    assert "<svg" in html and "<title>" in html
    assert "&lt;script&gt;alert(1)&lt;b&gt;.php" in html  # names are escaped
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1280,900",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr.decode()[-500:]
    png = shot.read_bytes()
    assert len(png) > 10_000
    seen = colours(png, step=1)
    assert len(seen) > 20  # not a blank page
    # The notable lanes' dot colours (the tool's actions orange, logins blue), drawn at
    # 80 % opacity on white, and the grey of ordinary events (file times) are on the
    # page: the timeline picture rendered.
    for hex_colour, alpha in (("ea580c", 0.8), ("2563eb", 0.8), ("9ca3af", 1.0)):
        rgb = [round(alpha * int(hex_colour[i : i + 2], 16) + (1 - alpha) * 255) for i in (0, 2, 4)]
        near = [c for c in seen if sum(abs(a - b) for a, b in zip(c, rgb, strict=True)) < 30]
        assert near, f"no #{hex_colour} dot in the screenshot"
    if os.environ.get("PRESERVE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["PRESERVE_KEEP_SCREENSHOT"])


def test_interrupted_journal_marks_unsealed_findings(planted: Path, tmp_path: Path) -> None:
    evidence = copy_evidence(planted, tmp_path / "cut")
    lines = (evidence / "custody.jsonl").read_bytes().splitlines(keepends=True)
    records = journal_records(evidence)
    last_artifact = max(
        r["seq"] for r in records if r["type"] == "artifact" and r["collector"] == "files"
    )
    (evidence / "custody.jsonl").write_bytes(b"".join(lines[: last_artifact + 1]))
    result = report(evidence, "--format", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["collection"]["status"] == "unfinished (no end record)"
    assert any("unsealed tail" in p for p in data["verification"]["problems"])
    files = next(f for f in data["findings"] if f["category"] == "files")
    assert files["unverified"] and all(
        "(unsealed record)" in u or u.startswith("artifacts/") for u in files["unverified"]
    )
    assert any("(unsealed record)" in u for u in files["unverified"])
