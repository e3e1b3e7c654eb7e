"""``preserve report`` and ``preserve export`` on hostile and very large evidence: real
collections damaged on purpose, run through the real command line with the address
space capped, as ``verify`` is in test_adversarial. Each must end in a report (or an
export) that says the evidence failed verification, or a clean one-line error; never a
traceback, ``MemoryError``, ``RecursionError`` or unbounded memory. Where a bound leaves
part of a file unread, the report says which file, which lines and why."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PRESERVE_CODE, ROOT, collect_json
from evidence_factory import copy_evidence, forge
from report_helpers import utmp_record

from agent.export.stream import Indented
from agent.report.bounded import CLIPPED, MAX_DEPTH, MAX_TEXT, clip
from manifests import canonical
from manifests.digest import sha256_bytes
from manifests.signing import Signer

_CAP = 512 * 1024**2  # address space: what verify is held to in test_adversarial
VOLATILE = "artifacts/volatile"
RUNS = (
    ("report", "md"),
    ("report", "html"),
    ("report", "json"),
    ("export", "case"),
    ("export", "hashdeep"),
    ("export", "bodyfile"),
)
FAILED = (
    "2026-11-26T21:19:01.000000+00:00 web01 sshd[{n}]: Failed password for root "
    "from 198.51.100.{a} port 40000 ssh2\n"
)
ACCEPTED = (
    "2026-11-26T21:20:00.000000+00:00 web01 sshd[902]: Accepted publickey for mallory "
    "from 203.0.113.9 port 50022 ssh2\n"
)


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real collection with the volatile snapshot and a small tree."""
    base = tmp_path_factory.mktemp("bounds")
    src = base / "host"
    (src / "var/log").mkdir(parents=True)
    (src / "var/log/app.log").write_text("2026-11-20T10:00:00Z start\n2026-11-26T10:00:00Z end\n")
    (src / "www").mkdir()
    (src / "www/index.html").write_text("hello\n")
    summary = collect_json(
        base / "out", "--only", "processes,network,system,files", "--path", src, timeout=300
    )
    return Path(summary["evidence_dir"])


@pytest.fixture
def evidence(collected: Path, tmp_path: Path) -> Path:
    copy = copy_evidence(collected, tmp_path)
    for path in (copy / "custody.jsonl", copy / VOLATILE, *(copy / VOLATILE).iterdir()):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return copy


def capped(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
    """``preserve ARGS`` with its address space capped, so that an unbounded read fails
    loudly here instead of pushing the test machine into swap."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (_CAP, _CAP))

    return subprocess.run(
        [sys.executable, "-c", PRESERVE_CODE, *map(os.fsencode, args)],
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
        cwd=ROOT,
        timeout=300,
        preexec_fn=cap,
    )


def clean(result: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    for bad in ("Traceback", "MemoryError", "RecursionError"):
        assert bad not in out + err, err[-3000:]
    return out, err


def fails_everywhere(evidence: Path) -> dict[str, str]:
    """Every report format and export: exit 1, written, and saying why; the outputs."""
    outputs = {}
    for command, fmt in RUNS:
        result = capped(command, evidence, "--format", fmt)
        out, err = clean(result)
        assert result.returncode == 1, (command, fmt, err[-2000:])
        assert "FAILED verification" in err, (command, fmt, err[-2000:])
        assert out, (command, fmt)
        outputs[fmt] = out
    return outputs


def append_chained(evidence: Path, *records: dict) -> None:
    """Append records with a correct chain and no signature: what anyone can write."""
    journal = evidence / "custody.jsonl"
    last = journal.read_bytes().rsplit(b"\n", 2)[-2]
    seq = json.loads(last)["seq"] + 1
    with open(journal, "ab") as f:
        for fields in records:
            line = canonical.dumps({"seq": seq, "prev": sha256_bytes(last), **fields})
            f.write(line + b"\n")
            last, seq = line, seq + 1


def deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


# -- hostile journals: the four attacks verify is bounded against ------------------------


def _long_line(journal: Path) -> None:
    with open(journal, "ab") as f:
        f.write(b'{"a":"' + b"x" * (200 * 1024**2) + b'"}\n')


def _sparse_tail(journal: Path) -> None:
    with open(journal, "ab") as f:
        f.truncate(journal.stat().st_size + 1024**3)


def _empty_objects(journal: Path) -> None:
    with open(journal, "ab") as f:
        f.write(b"{}\n" * (20 * 1024**2))


def _nested(journal: Path) -> None:
    with open(journal, "ab") as f:
        f.write(b"[" * 1_000_000 + b"]" * 1_000_000 + b"\n")


@pytest.mark.parametrize(
    "damage",
    [_long_line, _sparse_tail, _empty_objects, _nested],
    ids=["line-200MB", "sparse-1GiB", "60MB-of-empty-objects", "nested-1M-deep"],
)
def test_hostile_journal_tail_gives_a_failed_report_in_bounded_memory(
    evidence: Path, damage
) -> None:  # type: ignore[no-untyped-def]
    damage(evidence / "custody.jsonl")
    outputs = fails_everywhere(evidence)
    problems = json.loads(outputs["json"])["verification"]["problems"]
    assert any("chain broken" in p or "torn last line" in p for p in problems), problems
    assert "**FAILED VERIFICATION**" in outputs["md"]


def test_chained_records_that_are_huge_or_deep_are_clipped(evidence: Path) -> None:
    """Records anyone can append without a key: 7 MB fields (each line under the
    parser's 8 MiB bound) and values nested 900 levels deep (under Python's limit, so
    they parse) where the report and the exports read them."""
    when = "2026-11-27T05:20:00Z"
    append_chained(
        evidence,
        *[{"type": "action", "action": "x" * 7_000_000, "time": when}] * 8,
        *[{"type": "error", "reason": "r" * 7_000_000, "time": when}] * 8,
        *[{"type": "event", "event": "e" * 7_000_000, "time": when}] * 8,
        {"type": "action", "action": deep(900), "argv": deep(900), "time": when},
        {"type": "end", "status": deep(900), "counts": deep(900), "time": deep(900)},
        {
            "type": "artifact",
            "path": "artifacts/forged.log",
            "size": 1,
            "sha256": "0" * 64,
            "collector": deep(900),
            "source": {"path": deep(900), "stat": {"mtime_ns": deep(900), "ino": deep(900)}},
        },
        {"type": "transfer", "to": deep(900), "note": deep(900), "time": when},
    )
    outputs = fails_everywhere(evidence)
    data = json.loads(outputs["json"])
    assert data["collection"]["status"] is not None
    assert len(outputs["md"]) < 20 * 1024**2  # no 7 MB field copied 24 times


def test_a_re_signed_journal_with_odd_values_still_gives_a_report(evidence: Path) -> None:
    """Re-signed with another key, so it verifies (only a pin would tell): a start
    record whose host is a string, whose tool is a list and whose argv nests 900 deep,
    and seals whose reason does."""

    def mutate(records: list[dict]) -> None:
        records[0].update(host="not a mapping", tool=["x"], argv=deep(900), case=deep(900))
        for record in records:
            if record["type"] == "seal":
                record["reason"] = deep(900)

    forge(evidence, Signer.generate_ephemeral(), mutate)
    for command, fmt in RUNS:
        result = capped(command, evidence, "--format", fmt)
        _, err = clean(result)
        assert result.returncode == 0, (command, fmt, err[-2000:])


# -- stored JSON files the report parses ------------------------------------------------


def test_hostile_volatile_files_are_bounded_and_named(evidence: Path) -> None:
    volatile = evidence / VOLATILE
    nest = b"[" * 900 + b"1" + b"]" * 900
    (volatile / "system.json").write_bytes(b'{"clocks":' + b"[" * 1_000_000 + b"]" * 1_000_000)
    (volatile / "network.json").write_bytes(
        b'{"interfaces":{"eth0":{"addresses":' + nest + b'}},"listening":' + nest + b"}"
    )
    with open(volatile / "processes.jsonl", "ab") as f:
        f.write(b"[" * 1_000_000 + b"]" * 1_000_000 + b"\n")  # 2 MB: over the line bound
        f.write(b'{"pid":' + nest + b',"exe":' + nest + b',"cmdline":' + nest + b"}\n")
        f.write(b'{"pid": [1], "exe": "/tmp/x", "flags": [{"flag": ["x"]}, 5], "ppid": {}}\n')
    with open(volatile / "sockets.jsonl", "ab") as f:
        f.write(b'{"family": "inet", "status": "LISTEN", "lport": [1], "pid": [2]}\n')
        f.truncate((volatile / "sockets.jsonl").stat().st_size + 256 * 1024**2)
    outputs = fails_everywhere(evidence)
    limits = json.loads(outputs["json"])["limits"]
    said = {(x["artifact"], x["what"], x["why"]) for x in limits}
    by_file = {x["artifact"]: x for x in limits}
    assert by_file[f"{VOLATILE}/system.json"]["why"] == "its JSON is nested too deeply to parse"
    assert any(
        a == f"{VOLATILE}/processes.jsonl" and w.startswith("line(s) ") and "longer than" in y
        for a, w, y in said
    ), said
    assert any(a == f"{VOLATILE}/processes.jsonl" and "unexpected type" in w for a, w, _ in said), (
        said
    )
    assert any(a == f"{VOLATILE}/network.json" and "cut" in w for a, w, _ in said), said
    assert any(a == f"{VOLATILE}/sockets.jsonl" for a, _, _ in said), said
    assert f"[NOT EXAMINED]** {VOLATILE}/system.json" in outputs["md"]
    assert "NOT EXAMINED" in outputs["html"]


def test_a_json_lines_file_over_the_byte_bound_says_which_lines_were_not_read(
    evidence: Path,
) -> None:
    """300 MiB of (sparse) lines, over the 256 MiB read for one JSON-lines file."""
    path = evidence / VOLATILE / "processes.jsonl"
    with open(path, "r+b") as f:
        end = path.stat().st_size
        for n in range(1, 301):
            f.seek(end + n * 1024**2 - 1)
            f.write(b"\n")
    outputs = fails_everywhere(evidence)
    limits = json.loads(outputs["json"])["limits"]
    cut = [x for x in limits if x["artifact"] == f"{VOLATILE}/processes.jsonl"]
    assert cut and cut[0]["what"].startswith("lines ") and "were not read" in cut[0]["what"]
    assert "256 MiB" in cut[0]["why"]
    assert isinstance(cut[0]["seq"], int)


# -- parsers that used to stop silently ------------------------------------------------


def test_a_login_after_the_old_limits_is_found(tmp_path: Path) -> None:
    """An auth log of 300,000 failed logins (the report used to stop at 200,000 lines)
    and a wtmp of 100,001 logins (it stopped at 100,000 records), each with the newest
    login last; and a line too long to examine whole, which the report names."""
    src = tmp_path / "host" / "var" / "log"
    src.mkdir(parents=True)
    with open(src / "auth.log", "w") as f:
        for n in range(300_000):
            f.write(FAILED.format(n=n, a=n % 200))
        f.write("x" * 100_000 + "\n")
        f.write(ACCEPTED)
    ops = utmp_record("ops", "10.0.0.1", "10.0.0.1", 1_795_000_000)
    with open(src / "wtmp", "wb") as f:
        f.write(ops * 100_000 + utmp_record("eve", "192.0.2.77", "192.0.2.77", 1_795_728_000))
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", tmp_path / "host")
    evidence = Path(summary["evidence_dir"])
    result = capped("report", evidence, "--format", "json")
    out, err = clean(result)
    assert result.returncode == 0, err
    data = json.loads(out)
    titles = [f["title"] for f in data["findings"] if f["category"] == "logins"]
    accepted = [f for f in data["findings"] if "auth log: ssh accepted" in f["title"]]
    assert accepted and accepted[0]["refs"][0]["line"] == 300_002, titles[:5]
    assert any(t.startswith("eve from 192.0.2.77") for t in titles), titles[:5]
    assert any(t.startswith("300000 failed login(s) from 200 address(es)") for t in titles)
    limits = data["limits"]
    assert any(
        x["artifact"].endswith("/var/log/auth.log") and "longer than 64 KiB" in x["what"]
        for x in limits
    ), limits
    # Listed: the newest 1,000 failed logins and 10,000 others (all failed ones counted).
    said = [x["what"] for x in limits]
    assert "299000 older failed login(s) were found but not listed" in said, said
    assert "90002 older login(s) were found but not listed" in said, said  # ops, in wtmp
    md = capped("report", evidence, "--format", "md")
    assert md.returncode == 0 and b"mallory from 203.0.113.9" in md.stdout


# -- size: what a large --path tree costs the report ----------------------------------


def test_a_large_tree_is_summarised_not_listed(tmp_path: Path) -> None:
    src = tmp_path / "tree"
    for n in range(1_200):
        d = src / f"d{n // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n:04d}.log").write_bytes(b"\0" * (n % 50))
    summary = collect_json(tmp_path / "out", "--only", "files", "--path", src, timeout=300)
    evidence = Path(summary["evidence_dir"])
    result = capped("report", evidence, "--format", "json")
    out, err = clean(result)
    assert result.returncode == 0, err
    t = json.loads(out)["timeline"]
    assert sum(e["lane"] == "files" for e in t["events"]) == 500
    assert t["left_out"]["files"] == 700
    assert t["files_summary"]["count"] == 1200
    assert t["files_summary"]["bytes"] == sum(n % 50 for n in range(1200))
    limits = json.loads(out)["limits"]
    assert any("200 more log file(s)" in x["what"] for x in limits), limits
    md = capped("report", evidence, "--format", "md").stdout.decode()
    assert "Files: 1200 preserved file(s)" in md and "the newest 500 are listed" in md
    for fmt in ("bodyfile", "hashdeep"):
        exported = capped("export", evidence, "--format", fmt)
        assert exported.returncode == 0
        assert len(re.findall(rb"/f\d{4}\.log", exported.stdout)) == 1200


# -- the pieces: clipping, and the streamed JSON of the CASE export ----------------------


def test_clip_keeps_small_values_and_bounds_the_rest() -> None:
    record = {"type": "start", "argv": ["preserve", "-o", "/x"], "host": {"name": "é"}, "n": 5}
    assert clip(record) == record
    clipped = clip({"a": deep(100), "b": "x" * 100_000}, budget=10**6)
    depth, value = 0, clipped["a"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert depth < MAX_DEPTH and value == CLIPPED
    assert len(clipped["b"]) <= MAX_TEXT + 3
    json.dumps(clipped)  # shallow enough for anything downstream
    many = clip({"first": "kept", "c": list(range(100_000)), "last": 1})
    assert many["first"] == "kept" and many["last"] == 1  # breadth first: the top is kept
    assert many["c"][-1] == CLIPPED and len(many["c"]) < 1_000


@pytest.mark.parametrize(
    "node",
    [
        {"@id": "kb:x", "n": 5, "t": True, "z": None, "e": [], "d": {}, "s": 'é\u202e\n\x00"\\'},
        {"list": [{"@id": "a"}, {"@id": "b", "more": [1, [2, [3]]]}], "neg": -7},
        {},
    ],
)
def test_indented_nodes_are_what_json_dumps_writes(node: dict) -> None:
    indented = Indented(2)
    for _ in range(2):  # the second time from the cached template
        assert indented(node) == json.dumps(node, indent=2).replace("\n", "\n    ")
