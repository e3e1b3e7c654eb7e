"""Package integrity on an RPM host, from the SQLite rpmdb read directly: a package built
here with the real ``rpmbuild`` and installed with the real ``rpm --root`` into a tree;
a trojaned binary is a HIGH finding with the package's own SHA-256, an edited config file
is listed, a missing executable found, an unpackaged one listed; a damaged header, a FIFO
planted as the database and an old Berkeley DB database give a note, never a hang."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import journal_records

from collectors import rpmdb
from collectors.context import CollectContext, Options
from collectors.packages import PackagesCollector

SPEC = """Name: webtools
Version: 2.1
Release: 3
Summary: test package
License: MIT
BuildArch: noarch
%description
test
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/sbin %{buildroot}/etc
printf '#!/bin/sh\\necho real sshd\\n' > %{buildroot}/usr/sbin/sshd
printf '#!/bin/sh\\necho real ps\\n' > %{buildroot}/usr/bin/ps
chmod 755 %{buildroot}/usr/sbin/sshd %{buildroot}/usr/bin/ps
echo 'Port 22' > %{buildroot}/etc/webtools.conf
ln -s ps %{buildroot}/usr/bin/pslink
mkdir -p %{buildroot}/usr/share/webtools
for n in $(seq 1 400); do echo "$n" > %{buildroot}/usr/share/webtools/part-$n.txt; done
%files
/usr/share/webtools
/usr/sbin/sshd
/usr/bin/ps
/usr/bin/pslink
%config(noreplace) /etc/webtools.conf
"""

needs_rpm = pytest.mark.skipif(
    shutil.which("rpmbuild") is None or shutil.which("rpm") is None,
    reason="needs rpm and rpmbuild (Debian package rpm; tests/run.sh installs it)",
)


@pytest.fixture(scope="module")
def rpm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree with one package installed by the real rpm, database at /var/lib/rpm."""
    work = tmp_path_factory.mktemp("rpm")
    (work / "top/SPECS").mkdir(parents=True)
    (work / "top/SPECS/webtools.spec").write_text(SPEC)
    subprocess.run(
        ["rpmbuild", "--define", f"_topdir {work / 'top'}", "--define",
         "_build_id_links none", "-bb", str(work / "top/SPECS/webtools.spec")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (package,) = (work / "top/RPMS/noarch").glob("*.rpm")
    root = work / "root"
    root.mkdir()
    rpm = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    subprocess.run([*rpm, "--initdb"], check=True, capture_output=True)
    subprocess.run(
        [*rpm, "-i", "--nodeps", "--noscripts", "--nosignature", str(package)],
        check=True, capture_output=True,
    )  # fmt: skip
    return root


def _host(rpm_root: Path, tmp_path: Path) -> Path:
    host = tmp_path / "host"
    shutil.copytree(rpm_root, host, symlinks=True)
    return host


def _collect(ctx: CollectContext, host: Path) -> dict:
    ctx.options = Options(only=("packages",))
    collector = PackagesCollector()
    collector.root = os.fsencode(host)
    collector.collect(ctx)
    return json.loads((ctx.root / "artifacts/packages/integrity.json").read_bytes())


@needs_rpm
def test_the_database_rpm_wrote_is_read(rpm_root: Path) -> None:
    db = rpmdb.load(os.fsencode(rpm_root))
    assert db is not None and db.manager == "rpm" and db.packages == 1
    assert db.notes == []
    sshd = (rpm_root / "usr/sbin/sshd").read_bytes()
    assert db.digests[b"/usr/sbin/sshd"] == (
        hashlib.sha256(sshd).hexdigest().encode(),
        "webtools-2.1-3.noarch",
    )
    assert set(db.conffiles) == {b"/etc/webtools.conf"}
    assert b"/usr/bin/pslink" not in db.digests  # a symlink has no content to check
    assert db.algorithm("webtools-2.1-3.noarch") == "sha256"


@needs_rpm
def test_trojaned_missing_edited_and_unpackaged(
    ctx: CollectContext, rpm_root: Path, tmp_path: Path
) -> None:
    host = _host(rpm_root, tmp_path)
    (host / "usr/sbin/sshd").write_bytes(b"#!/bin/sh\necho trojan\n")
    (host / "usr/bin/ps").unlink()
    (host / "etc/webtools.conf").write_text("Port 2222\n")
    (host / "usr/bin/.x").write_bytes(b"\x7fELF")
    os.chmod(host / "usr/bin/.x", 0o755)
    before = sorted(p.name for p in (host / "var/lib/rpm").iterdir())
    report = _collect(ctx, host)
    assert [r["path"] for r in report["modified"]] == ["/usr/sbin/sshd"]
    assert "expected_sha256" in report["modified"][0]
    assert [r["path"] for r in report["missing"]] == ["/usr/bin/ps"]
    assert [r["path"] for r in report["conffiles_changed"]] == ["/etc/webtools.conf"]
    assert [r["path"] for r in report["unpackaged_executables"]] == [f"{host}/usr/bin/.x"]
    findings = [r for r in journal_records(ctx.root) if r.get("event") == "finding"]
    assert {(f["rule"], f["severity"], f["package"]) for f in findings} == {
        ("package-file-modified", "HIGH", "webtools-2.1-3.noarch"),
        ("package-executable-missing", "MEDIUM", "webtools-2.1-3.noarch"),
    }
    summary = dict(ctx.summary)
    assert summary["Packages"].startswith("1 rpm package, 403 files: 1 modified, 1 missing")
    # SQLite was opened immutable: no -shm or -journal written beside the host's database
    assert sorted(p.name for p in (host / "var/lib/rpm").iterdir()) == before


@needs_rpm
def test_a_damaged_header_is_skipped_and_said(rpm_root: Path, tmp_path: Path) -> None:
    host = _host(rpm_root, tmp_path)
    path = host / "var/lib/rpm/rpmdb.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("UPDATE Packages SET blob = substr(blob, 1, 40)")
    conn.commit()
    conn.close()
    db = rpmdb.load(os.fsencode(host))
    assert db is not None and db.packages == 0
    assert any("package header was skipped" in n for n in db.notes)


def test_a_fifo_planted_as_the_database_does_not_hang(tmp_path: Path) -> None:
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    os.mkfifo(tmp_path / "var/lib/rpm/rpmdb.sqlite")
    db = rpmdb.load(os.fsencode(tmp_path))
    assert db is not None and db.notes == ["the RPM database is not a regular file: not read"]


def test_a_symlink_planted_as_the_database_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    os.symlink("/etc/passwd", tmp_path / "var/lib/rpm/rpmdb.sqlite")
    db = rpmdb.load(os.fsencode(tmp_path))
    assert db is not None and db.packages == 0
    assert db.notes and "cannot be opened" in db.notes[0]


def test_a_file_that_is_not_berkeley_db_is_said_not_guessed(
    ctx: CollectContext, tmp_path: Path
) -> None:
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    (tmp_path / "var/lib/rpm/Packages").write_bytes(b"\0" * 4096)
    _collect(ctx, tmp_path)
    errors = [r for r in journal_records(ctx.root) if r.get("type") == "error"]
    assert [e["reason"] for e in errors] == [
        "the RPM database (Berkeley DB) cannot be read: no Berkeley DB hash magic number"
    ]


def test_header_parser_rejects_overruns() -> None:
    blob = (2).to_bytes(4, "big") + (1000).to_bytes(4, "big")  # claims more than it has
    with pytest.raises(rpmdb.HeaderError):
        rpmdb.parse_header(blob)


def _berkeley_db_copy(rpm_root: Path, dest: Path) -> None:
    """The sqlite database's header blobs written as RHEL 7's Packages file by Berkeley
    DB itself (db5.3_load, hash access method): key the instance number, data the blob;
    and the counter record RPM keeps at instance 0."""
    conn = sqlite3.connect(f"file:{rpm_root / 'var/lib/rpm/rpmdb.sqlite'}?immutable=1", uri=True)
    rows = [(0, b"\x02\0\0\0")] + list(conn.execute("SELECT hnum, blob FROM Packages"))
    conn.close()
    esc = lambda b: "".join(f"\\{x:02x}" for x in b)  # noqa: E731
    dest.mkdir(parents=True)
    dump = dest / "dump.txt"
    dump.write_text("".join(f"{esc(h.to_bytes(4, 'little'))}\n{esc(b)}\n" for h, b in rows))
    (dest / "var/lib/rpm").mkdir(parents=True)
    subprocess.run(
        ["db5.3_load", "-T", "-t", "hash", "-f", dump, dest / "var/lib/rpm/Packages"],
        check=True, capture_output=True,
    )  # fmt: skip


@needs_rpm
@pytest.mark.skipif(shutil.which("db5.3_load") is None, reason="needs db5.3-util (db5.3_load)")
def test_a_berkeley_db_database_reads_as_the_sqlite_one(rpm_root: Path, tmp_path: Path) -> None:
    """RHEL/CentOS 7's format; the package's header (400+ files) is larger than a page,
    so it is stored on a chain of overflow pages."""
    host = tmp_path / "host"
    _berkeley_db_copy(rpm_root, host)
    from_sqlite = rpmdb.load(os.fsencode(rpm_root))
    from_bdb = rpmdb.load(os.fsencode(host))
    assert from_sqlite is not None and from_bdb is not None
    assert from_bdb.notes == [] and from_bdb.packages == 1
    assert from_bdb.digests == from_sqlite.digests and len(from_bdb.digests) > 400
    assert from_bdb.conffiles == from_sqlite.conffiles


@needs_rpm
@pytest.mark.skipif(shutil.which("db5.3_load") is None, reason="needs db5.3-util (db5.3_load)")
def test_a_damaged_overflow_chain_loses_that_package_only(rpm_root: Path, tmp_path: Path) -> None:
    host = tmp_path / "host"
    _berkeley_db_copy(rpm_root, host)
    path = host / "var/lib/rpm/Packages"
    data = bytearray(path.read_bytes())
    page = 4096
    for n in range(1, len(data) // page):  # point every overflow page at itself: a loop
        if data[n * page + 25] == 7:
            data[n * page + 16 : n * page + 20] = n.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    db = rpmdb.load(os.fsencode(host))
    assert db is not None and db.packages == 0
    assert db.notes == ["1 pages of the RPM database did not parse"]
