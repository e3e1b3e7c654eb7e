"""The journal parser against journalctl, on journals written by systemd's own writer
(``systemd-journal-remote``): regular and compact files; uncompressed, ZSTD, XZ and LZ4
data objects; binary, non-UTF-8, control-character, repeated and empty values. Every
field of every entry must be what ``journalctl --file X -o json --all`` prints. Then the
files journalctl refuses or that were being written: cut short, a torn entry array
chain, an ONLINE copy; and the collector itself, with a FIFO and a file that is not a
journal where journal files are expected."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import journal_records
from journaltools import BIG, REMOTE, export, journalctl, need_tools, recompress, write_journal

from collectors.context import CollectContext, Options
from collectors.journald import JournaldCollector
from collectors.journalfile import JournalFile, JournalFormatError

ENTRIES = [
    [b"MESSAGE=Accepted publickey for alice from 192.0.2.7 port 50022 ssh2", b"_COMM=sshd",
     b"SYSLOG_IDENTIFIER=sshd", b"_PID=812", b"PRIORITY=6", BIG],
    [b"MESSAGE=tab\tand\nnewline stay text", b"BIN=\x00\x01raw", b"LATIN=caf\xe9",
     b"C1=next\xc2\x85line", b"EMPTY=", b"UNI=\xe2\x9c\x93 \xf0\x9f\x94\x91", b"PRIORITY=5"],
    [b"MESSAGE=same field twice", b"TAG=one", b"TAG=two", b"TAG=\xff", BIG],
    [b"MESSAGE=\xef\xbf\xbe non-character", b"_TRANSPORT=kernel", b"PRIORITY=3"],
]  # fmt: skip


def parse(path: Path) -> tuple[list[dict], JournalFile]:
    fd = os.open(path, os.O_RDONLY)
    try:
        jf = JournalFile.open(fd)
        return list(jf.entries()), jf
    finally:
        os.close(fd)


def assert_same(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        for key, value in b.items():
            assert a.get(key) == value, key
        assert set(a) - set(b) <= {"__SEQNUM", "__SEQNUM_ID"}  # newer journalctl prints them


@pytest.mark.parametrize("compact", [False, True], ids=["regular", "compact"])
@pytest.mark.parametrize("codec", ["none", "ZSTD", "XZ", "LZ4"])
def test_every_field_matches_journalctl(tmp_path: Path, compact: bool, codec: str) -> None:
    need_tools()
    path = write_journal(tmp_path / "t.journal", ENTRIES, compact, compress=codec == "ZSTD")
    if codec in ("XZ", "LZ4"):
        recompress(path, BIG, codec, compact)
    theirs = journalctl(path)
    assert len(theirs) == len(ENTRIES)
    ours, jf = parse(path)
    assert_same(ours, theirs)
    assert ours[0]["BIG"] == BIG[4:].decode()
    assert ours[2]["TAG"] == ["one", "two", [255]]
    assert jf.problems == [] and jf.header.compact == compact
    flags = jf.header.describe()["incompatible_flags"]
    assert ("COMPACT" in flags) == compact
    if codec != "none":
        assert f"COMPRESSED-{codec}" in flags


def test_a_file_cut_short_gives_every_entry_before_the_cut(tmp_path: Path) -> None:
    need_tools()
    many = [[b"MESSAGE=entry %d" % i, b"N=%d" % i] for i in range(40)]
    path = write_journal(tmp_path / "t.journal", many, compact=True)
    whole = journalctl(path)
    data = path.read_bytes()
    cut = data.find(b"MESSAGE=entry 30")
    path.write_bytes(data[:cut])
    refused = subprocess.run(["journalctl", "--file", str(path), "-o", "json"], capture_output=True)
    assert not refused.stdout  # journalctl shows nothing of a file cut short
    ours, jf = parse(path)
    assert len(ours) == 30  # entry 30 and its data objects were past the cut
    assert_same(ours, whole[: len(ours)])
    assert any("cut short" in p for p in jf.problems)
    assert any("outside the file" in p or "past the end" in p for p in jf.problems)


def test_a_torn_entry_array_stops_cleanly(tmp_path: Path) -> None:
    need_tools()
    many = [[b"MESSAGE=entry %d" % i] for i in range(20)]
    path = write_journal(tmp_path / "t.journal", many, compact=False)
    whole = journalctl(path)
    d = bytearray(path.read_bytes())
    (n_entries,) = struct.unpack_from("<Q", d, 152)
    struct.pack_into("<Q", d, 152, n_entries + 5)  # the header counts entries never linked
    pos = d.find(b"MESSAGE=entry 15")
    entry = d.find(struct.pack("<Q", 16), pos) - 16  # entry object with seqnum 16
    assert d[entry] == 3
    d[entry : entry + 16] = b"\xee" * 16  # a torn object header
    path.write_bytes(bytes(d))
    ours, jf = parse(path)
    assert_same(ours, whole[:15])
    assert any("expected type 3" in p for p in jf.problems)


def test_an_online_file_being_written(tmp_path: Path) -> None:
    need_tools()
    out = tmp_path / "live.journal"
    proc = subprocess.Popen(
        [REMOTE, f"--output={out}", "-"], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(export([[b"MESSAGE=live %d" % i] for i in range(10)]))
        proc.stdin.flush()
        copy = tmp_path / "copy.journal"
        for _ in range(100):
            time.sleep(0.05)
            if out.exists():
                shutil.copyfile(out, copy)
                ours, jf = parse(copy)
                if len(ours) == 10:
                    break
        assert jf.header.state == "ONLINE"
        assert_same(ours, journalctl(copy))
        assert [e["MESSAGE"] for e in ours] == [f"live {i}" for i in range(10)]
    finally:
        proc.kill()
        proc.wait()


def test_not_a_journal(tmp_path: Path) -> None:
    bad = tmp_path / "x.journal"
    bad.write_bytes(b"LPKSHHRX" + b"\0" * 300)
    fd = os.open(bad, os.O_RDONLY)
    with pytest.raises(JournalFormatError, match="signature"):
        JournalFile.open(fd)
    os.close(fd)


def test_collector_exports_each_file_and_records_problems(
    ctx: CollectContext, tmp_path: Path
) -> None:
    need_tools()
    root = tmp_path / "var/log/journal/0123"
    root.mkdir(parents=True)
    write_journal(root / "system.journal", ENTRIES, compact=True)
    (root / "garbage.journal").write_bytes(b"not a journal at all" * 40)
    os.mkfifo(root / "fifo.journal")
    (root / "notes.txt").write_text("not a journal name: ignored")
    collector = JournaldCollector()
    collector.roots = (os.fsencode(tmp_path / "var/log/journal"),)
    collector.collect(ctx)
    stored = ctx.root / f"artifacts/journald{root}/system.journal.jsonl"
    rows = [json.loads(line) for line in stored.read_text().splitlines()]
    assert_same(rows, journalctl(root / "system.journal"))
    records = journal_records(ctx.root)
    parsed = [r for r in records if r.get("event") == "journal-parsed"]
    assert len(parsed) == 1 and parsed[0]["entries"] == len(ENTRIES)
    assert parsed[0]["header"]["state"] in ("OFFLINE", "ARCHIVED") and parsed[0]["problems"] == []
    art = [r for r in records if r["type"] == "artifact"]
    assert art[0]["kind"] == "journal-export"
    assert art[0]["source"]["path"] == str(root / "system.journal")
    errors = [r["reason"] for r in records if r["type"] == "error"]
    assert any("signature" in e for e in errors)
    assert any(r["type"] == "skipped" and "regular" in r["reason"] for r in records)


def test_report_reads_ssh_and_sudo_from_the_parsed_journal(tmp_path: Path) -> None:
    """A host with no auth.log (Debian 12 without rsyslog): the report's logins come from
    the parsed journal, each linked to the export's record and line."""
    need_tools()
    from conftest import collect_json, preserve

    src = tmp_path / "host/var/log/journal/0123"
    src.mkdir(parents=True)
    sshd = [b"SYSLOG_IDENTIFIER=sshd", b"_COMM=sshd", b"_PID=902"]
    write_journal(src / "system.journal", [
        [b"MESSAGE=Failed password for root from 198.51.100.4 port 40000 ssh2", *sshd],
        [b"MESSAGE=Accepted publickey for mallory from 203.0.113.9 port 50022 ssh2", *sshd],
        [b"MESSAGE=mallory : TTY=pts/0 ; PWD=/home/mallory ; USER=root ; COMMAND=/bin/bash",
         b"SYSLOG_IDENTIFIER=sudo"],
        [b"MESSAGE=Started nginx.service", b"SYSLOG_IDENTIFIER=systemd"],
    ], compact=True)  # fmt: skip
    summary = collect_json(
        tmp_path / "out", "--only", "journald", "--profile", "full", "--path", tmp_path / "host"
    )  # full: every entry, these are from 2023
    evidence = Path(summary["evidence_dir"])
    result = preserve("report", evidence, "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    logins = [f for f in json.loads(result.stdout)["findings"] if f["category"] == "logins"]
    titles = [f["title"] for f in logins]
    accepted = [f for f in logins if "journal: ssh accepted (publickey)" in f["title"]]
    assert accepted and "mallory from 203.0.113.9" in accepted[0]["title"], titles
    assert accepted[0]["time"] == "2023-11-14 22:13:21Z"
    assert accepted[0]["refs"][0]["line"] == 2
    assert accepted[0]["refs"][0]["artifact"].startswith("artifacts/journald/")
    assert any(t.startswith("mallory from pts/0: journal: sudo to root: /bin/bash") for t in titles)
    assert any(t.startswith("1 failed login(s) from 1 address") for t in titles)


def test_default_profile_exports_the_detection_window(ctx: CollectContext, tmp_path: Path) -> None:
    need_tools()
    now_us = time.time_ns() // 1000
    day = 86400 * 10**6
    root = tmp_path / "journal"
    root.mkdir()
    entries = [[b"MESSAGE=forty days ago"], [b"MESSAGE=yesterday"]]
    write_journal(root / "a.journal", entries, True, start_us=now_us - 40 * day, step_us=39 * day)
    write_journal(root / "old.journal", entries[:1], True, start_us=now_us - 40 * day)
    collector = JournaldCollector()
    collector.roots = (os.fsencode(root),)
    collector.configure(Options())  # standard: detection_window_days = 30
    collector.collect(ctx)
    rows = (ctx.root / f"artifacts/journald{root}/a.journal.jsonl").read_text().splitlines()
    assert [json.loads(r)["MESSAGE"] for r in rows] == ["yesterday"]
    records = journal_records(ctx.root)
    parsed = [r for r in records if r.get("event") == "journal-parsed"]
    assert [(p["entries"], p["older_than_window"]) for p in parsed] == [(1, 1)]
    skipped = [r for r in records if r["type"] == "skipped"]
    assert skipped[0]["source"]["path"].endswith("old.journal")
    assert "detection window" in skipped[0]["reason"]


def test_a_field_that_does_not_decode_is_named_and_the_rest_kept(tmp_path: Path) -> None:
    need_tools()
    path = write_journal(tmp_path / "t.journal", ENTRIES[:1], compact=True, compress=False)
    recompress(path, BIG, "LZ4", compact=True)
    d = bytearray(path.read_bytes())
    pos = d.find(struct.pack("<BB6x", 1, 2))  # the LZ4 data object's header
    d[pos + 72 + 8 : pos + 72 + 12] = b"\xff\xff\xff\xff"  # its first token and literals
    path.write_bytes(bytes(d))
    (entry,), jf = parse(path)
    assert entry["MESSAGE"].startswith("Accepted publickey") and "BIG" not in entry
    assert "LZ4" in jf.problems[0] and jf.fields_not_decoded == 1
    assert entry["__PRESERVE_NOT_DECODED"].startswith("data object at offset")


def test_non_characters_and_controls_print_as_journalctl_prints_them(tmp_path: Path) -> None:
    """The printable test is three patterns (ASCII, BMP, astral non-characters in UTF-8):
    each kind of value must still come out as journalctl prints it."""
    need_tools()
    values = ["\U0001fffe", "a\U0010ffff", "\U0001f511 key", "\ufdd0", "\ufdef", "\ufdf0",
              "x\x85", "\x7f", "\U000efffe", "\U000f0000 pua", "plain", "tab\there"]  # fmt: skip
    fields = [b"V%02d=" % i + v.encode("utf-8", "surrogatepass") for i, v in enumerate(values)]
    path = write_journal(tmp_path / "t.journal", [fields], compact=True)
    ours, _ = parse(path)
    assert_same(ours, journalctl(path))
    assert ours[0]["V02"] == "\U0001f511 key" and ours[0]["V00"] == list("\U0001fffe".encode())


def test_a_login_any_user_can_log_as_sshd_is_not_a_login(tmp_path: Path) -> None:
    """``logger -t sshd 'Accepted password for root from ...'`` (or sd_journal_send with
    SYSLOG_IDENTIFIER=sshd) is open to every local user; journald itself records who sent
    it (``_COMM``, which a sender cannot set). The report must not show that forged
    line as a login, and still shows sshd's own."""
    need_tools()
    from conftest import collect_json, preserve

    src = tmp_path / "host/var/log/journal/0123"
    src.mkdir(parents=True)
    write_journal(src / "system.journal", [
        [b"MESSAGE=Accepted password for root from 203.0.113.66 port 22 ssh2",
         b"SYSLOG_IDENTIFIER=sshd", b"_COMM=logger", b"_UID=1000", b"_PID=4000"],
        [b"MESSAGE=Accepted publickey for mallory from 203.0.113.9 port 50022 ssh2",
         b"SYSLOG_IDENTIFIER=sshd-session", b"_COMM=sshd-session", b"_PID=902"],
        [b"MESSAGE=eve : TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
         b"SYSLOG_IDENTIFIER=sudo", b"_COMM=python3", b"_UID=1001"],
    ], compact=True)  # fmt: skip
    summary = collect_json(
        tmp_path / "out", "--only", "journald", "--profile", "full", "--path", tmp_path / "host"
    )
    result = preserve("report", summary["evidence_dir"], "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    titles = [
        f["title"] for f in json.loads(result.stdout)["findings"] if f["category"] == "logins"
    ]
    assert any("mallory from 203.0.113.9" in t for t in titles), titles  # OpenSSH 9.8's name
    assert not any("203.0.113.66" in t or "eve" in t for t in titles), titles
