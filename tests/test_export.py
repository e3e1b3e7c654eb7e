"""``preserve export``: CASE/UCO checked by ``case_validate``, hashdeep's own audit,
and the bodyfile read by The Sleuth Kit's ``mactime``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import collect_json, journal_records, preserve
from evidence_factory import copy_evidence

BIN = Path(sys.executable).parent
CASE_VALIDATE = shutil.which("case_validate", path=str(BIN)) or shutil.which("case_validate")
HASHDEEP = shutil.which("hashdeep")
MACTIME = shutil.which("mactime")
PASS = {"PRESERVE_KEY_PASSPHRASE": "lab key passphrase"}


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Collected evidence with awkward names, handed over once to a lab."""
    tmp = tmp_path_factory.mktemp("export")
    src = tmp / "src"
    (src / "dir").mkdir(parents=True)
    (src / "a.log").write_text("line\n")
    (src / "dir" / "pipe|and,comma name.txt").write_text("x" * 1000)
    (src / "dir" / "new\nline").write_bytes(b"\x00\x01binary")
    os.utime(src / "a.log", ns=(1_700_000_000_000_000_000, 1_600_000_000_123_456_789))
    summary = collect_json(
        tmp / "out", "--only", "files", "--path", src, "--case", "IR-9", "--examiner", "B. Lab"
    )
    ev = Path(summary["evidence_dir"])
    keys = tmp / "keys"
    assert preserve("keygen", "--out", keys, "--name", "lab", env=PASS).returncode == 0
    moved = preserve("custody", ev, "--to", "Forensic Lab", "--key", keys / "lab.key", env=PASS)
    assert moved.returncode == 0, moved.stderr.decode()
    return ev


def export(ev: Path, fmt: str, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess:
    return preserve("export", ev, "--format", fmt, *args)


def artifacts(ev: Path) -> list[dict]:
    return [r for r in journal_records(ev) if r["type"] == "artifact"]


def test_case_graph_shape(evidence: Path) -> None:
    result = export(evidence, "case")
    assert result.returncode == 0, result.stderr.decode()
    graph = json.loads(result.stdout)["@graph"]
    by_type: dict[str, list[dict]] = {}
    for node in graph:
        by_type.setdefault(node["@type"], []).append(node)
    actions = {a["uco-core:name"]: a for a in by_type["case-investigation:InvestigativeAction"]}
    assert set(actions) == {"collected", "transferred"}
    collected, transferred = actions["collected"], actions["transferred"]
    tool = by_type["uco-tool:Tool"][0]
    assert collected["uco-action:instrument"] == {"@id": tool["@id"]}
    assert tool["uco-tool:version"] == journal_records(evidence)[0]["tool"]["version"]
    people = {p["@id"]: p["uco-core:name"] for p in by_type["uco-identity:Person"]}
    assert people[collected["uco-action:performer"]["@id"]] == "B. Lab"
    assert people[transferred["uco-action:performer"]["@id"]] == "Forensic Lab"
    assert collected["uco-action:startTime"]["@type"] == "xsd:dateTime"
    records = by_type["case-investigation:ProvenanceRecord"]
    assert len(records) == 2
    first, second = records
    assert {"@id": first["@id"]} in collected["uco-action:result"]
    assert transferred["uco-action:object"] == [{"@id": first["@id"]}]
    assert transferred["uco-action:result"] == [{"@id": second["@id"]}]
    files = by_type["uco-observable:File"]
    stored = {a["path"]: a["sha256"] for a in artifacts(evidence)}
    assert len(files) == len(stored)
    for f in files:
        content = next(
            x for x in f["uco-core:hasFacet"] if x["@type"].endswith("ContentData" + "Facet")
        )
        h = content["uco-observable:hash"][0]
        assert h["uco-types:hashMethod"] == "SHA256"
        assert h["uco-types:hashValue"]["@value"].lower() == stored[f["uco-core:name"]]
    assert export(evidence, "case").stdout == result.stdout  # stable identifiers


@pytest.mark.skipif(CASE_VALIDATE is None, reason="case-utils is not installed (pip)")
def test_case_validate_passes(evidence: Path, tmp_path: Path) -> None:
    out = tmp_path / "evidence.jsonld"
    assert export(evidence, "case", "-o", out).returncode == 0
    result = subprocess.run([CASE_VALIDATE, out], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout.decode()[-3000:]
    assert b"Conforms: True" in result.stdout
    # A graph that breaks a shape is refused, so the check above can fail.
    data = json.loads(out.read_text())
    data["@graph"][0]["uco-core:name"] = {"@type": "xsd:integer", "@value": 5}
    out.write_text(json.dumps(data))
    bad = subprocess.run([CASE_VALIDATE, out], capture_output=True, timeout=300)
    assert bad.returncode != 0 and b"Conforms: False" in bad.stdout


def test_hashdeep_list_format(evidence: Path) -> None:
    text = export(evidence, "hashdeep").stdout.decode()
    lines = text.splitlines()
    assert lines[:2] == ["%%%% HASHDEEP-1.0", "%%%% size,sha256,filename"]
    rows = [line for line in lines if not line.startswith(("%%%%", "##"))]
    listed = {}
    for row in rows:
        size, digest, name = row.split(",", 2)
        listed[name] = (int(size), digest)
    assert listed == {a["path"]: (a["size"], a["sha256"]) for a in artifacts(evidence)}


@pytest.mark.skipif(HASHDEEP is None, reason="Debian's hashdeep is not installed")
def test_hashdeep_audit_passes_and_catches_tampering(evidence: Path, tmp_path: Path) -> None:
    known = tmp_path / "known.hashdeep"
    assert export(evidence, "hashdeep", "-o", known).returncode == 0
    argv = [HASHDEEP, "-c", "sha256", "-l", "-r", "-a", "-vv", "-k", known]
    ok = subprocess.run(
        [*argv, "artifacts", "collection.log"], cwd=evidence, capture_output=True, timeout=60
    )
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    assert b"Audit passed" in ok.stdout
    matched = int(ok.stdout.split(b"Files matched:")[1].split()[0])
    assert matched == len(artifacts(evidence))
    copy = copy_evidence(evidence, tmp_path / "copy")
    target = next(copy.rglob("a.log"))
    os.chmod(target, 0o644)
    target.write_text("LINE\n")
    bad = subprocess.run(
        [*argv, "artifacts", "collection.log"], cwd=copy, capture_output=True, timeout=60
    )
    assert bad.returncode != 0 and b"Audit failed" in bad.stdout


def test_bodyfile_fields(evidence: Path) -> None:
    text = export(evidence, "bodyfile").stdout.decode()
    rows = [line.split("|") for line in text.splitlines()]
    assert all(len(r) == 11 for r in rows), rows
    files = [a for a in artifacts(evidence) if a.get("source")]
    assert len(rows) == len(files)
    by_name = {r[1]: r for r in rows}
    log = next(a for a in files if a["source"]["path"].endswith("/a.log"))
    row = by_name[log["source"]["path"]]
    st = log["source"]["stat"]
    assert row[0] == log["sha256"] == hashlib.sha256(b"line\n").hexdigest()
    assert row[2:7] == [st["ino"], st["mode_text"], str(st["uid"]), str(st["gid"]), "5"]
    assert row[7:] == ["1700000000", "1600000000", str(int(st["ctime_ns"]) // 10**9), "0"]
    names = set(by_name)
    assert any(n.endswith("/dir/pipe%7Cand,comma name.txt") for n in names)
    assert any(n.endswith("/dir/new%0Aline") for n in names)


@pytest.mark.skipif(MACTIME is None, reason="Debian's sleuthkit (mactime) is not installed")
def test_mactime_reads_the_bodyfile(evidence: Path, tmp_path: Path) -> None:
    body = tmp_path / "body"
    assert export(evidence, "bodyfile", "-o", body).returncode == 0
    result = subprocess.run(
        [MACTIME, "-b", body, "-d", "-z", "UTC", "2020-01-01..2030-01-01"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    # a.log's mtime (2020-09-13 12:26:40 UTC) and atime (2023-11-14 22:13:20 UTC).
    assert "Sun Sep 13 2020 12:26:40,5,m...," in out
    assert "Tue Nov 14 2023 22:13:20,5,.a..," in out
    # mactime decodes the %7C escape back: the listing shows the real name.
    assert '/dir/pipe|and,comma name.txt"' in out


def test_sha256sum_is_the_evidence_list_and_outputs_stay_outside(evidence: Path) -> None:
    result = export(evidence, "sha256sum")
    assert result.stdout == (evidence / "SHA256SUMS").read_bytes()
    inside = export(evidence, "case", "-o", evidence / "x.jsonld")
    assert inside.returncode == 2 and not (evidence / "x.jsonld").exists()


def test_export_of_tampered_evidence_warns(evidence: Path, tmp_path: Path) -> None:
    copy = copy_evidence(evidence, tmp_path / "t")
    (copy / "artifacts" / "planted").write_text("not collected")
    result = export(copy, "hashdeep")
    assert result.returncode == 1 and b"FAILED verification" in result.stderr
    assert b"planted" not in result.stdout


def test_case_is_streamed_as_json_dumps_would_write_it(evidence: Path) -> None:
    """The export is written node by node as the journal is read; the bytes are still
    exactly those of ``json.dumps(graph, indent=2)``."""
    text = export(evidence, "case").stdout.decode()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
