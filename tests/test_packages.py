"""Package integrity, from the dpkg database read directly: a modified package binary is
a HIGH finding, a changed conffile is listed but not flagged, a missing executable is
found, files dpkg's path-exclude keeps off the disk are not missing, a diversion moves
another package's file, and an executable no package owns is listed. Against a tree made
here, and once against the real /usr/bin/true replaced in a private mount namespace."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from conftest import PRESERVE_ARGV, ROOT, journal_records, requires_root

from collectors.context import CollectContext, Options
from collectors.logprofile import load_profile
from collectors.packages import PackagesCollector


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _db(root: Path, package: str, files: dict[str, bytes], conffiles: dict[str, bytes]) -> None:
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    (info / f"{package}.md5sums").write_text(
        "".join(f"{_md5(d)}  {p.lstrip('/')}\n" for p, d in files.items())
    )
    (info / f"{package}.list").write_text("".join(f"{p}\n" for p in [*files, *conffiles]))
    status = root / "var/lib/dpkg/status"
    conf = "".join(f" {p} {_md5(d)}\n" for p, d in conffiles.items())
    with status.open("a") as f:
        f.write(f"Package: {package}\nStatus: install ok installed\nConffiles:\n{conf}\n")


def _check(ctx: CollectContext, root: Path) -> dict[str, Any]:
    """The packages collector run on the tree ``root``: its integrity report."""
    ctx.options = Options(only=("packages",))
    collector = PackagesCollector()
    collector.root = os.fsencode(root)
    collector.collect(ctx)
    report: dict[str, Any] = json.loads(
        (ctx.root / "artifacts/packages/integrity.json").read_bytes()
    )
    return report


def test_modified_missing_and_unpackaged(ctx: CollectContext, tmp_path: Path) -> None:
    root = tmp_path / "host"
    files = {
        "/usr/bin/sshd": b"real sshd",
        "/usr/bin/ps": b"real ps",
        "/usr/share/doc/x/README": b"doc",
        "/usr/lib/x86_64-linux-gnu/libkeyutils.so.1": b"lib",
    }
    _db(root, "openssh", files, {"/etc/ssh/sshd_config": b"Port 22\n"})
    for path, data in files.items():
        if "doc" not in path:
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_bytes(data)
            os.chmod(root / path.lstrip("/"), 0o755)
    (root / "usr/bin/ps").unlink()
    (root / "usr/lib/x86_64-linux-gnu/libkeyutils.so.1").write_bytes(b"trojan")  # modified
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/sshd_config").write_text("Port 2222\n")  # an admin's edit
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
    (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text("path-exclude=/usr/share/doc/*\n")
    (root / "usr/bin/.hidden-miner").write_bytes(b"\x7fELF")
    os.chmod(root / "usr/bin/.hidden-miner", 0o755)
    report = _check(ctx, root)
    assert [r["path"] for r in report["modified"]] == ["/usr/lib/x86_64-linux-gnu/libkeyutils.so.1"]
    assert [r["path"] for r in report["missing"]] == ["/usr/bin/ps"]
    assert [r["path"] for r in report["conffiles_changed"]] == ["/etc/ssh/sshd_config"]
    assert [r["path"] for r in report["unpackaged_executables"]] == [
        f"{root}/usr/bin/.hidden-miner"
    ]
    findings = [r for r in journal_records(ctx.root) if r.get("event") == "finding"]
    assert {(f["rule"], f["severity"], f["source"]["path"]) for f in findings} == {
        ("package-file-modified", "HIGH", f"{root}/usr/lib/x86_64-linux-gnu/libkeyutils.so.1"),
        ("package-executable-missing", "MEDIUM", f"{root}/usr/bin/ps"),
    }
    assert ("Finding HIGH", "package-file-modified (1, packages)") in list(ctx.summary)


def test_a_diversion_moves_another_packages_file(ctx: CollectContext, tmp_path: Path) -> None:
    root = tmp_path / "host"
    _db(root, "coreutils", {"/usr/bin/ls": b"ls"}, {})
    (root / "var/lib/dpkg/diversions").write_text("/usr/bin/ls\n/usr/bin/ls.distrib\nwrap\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/ls.distrib").write_bytes(b"ls")
    (root / "usr/bin/ls").write_bytes(b"wrapper of another package")
    report = _check(ctx, root)
    assert report["modified"] == [] and report["missing"] == []


@requires_root
def test_trojaned_true_in_a_private_mount_namespace(tmp_path: Path) -> None:
    """The real /usr/bin/true, replaced only inside a private mount namespace; the dpkg
    database seen there is coreutils' own entries only, so the check stays quick."""
    real = Path("/var/lib/dpkg/info/coreutils.md5sums")
    if shutil.which("unshare") is None or not real.exists():
        return
    info = tmp_path / "info"
    info.mkdir()
    shutil.copy(real, info / "coreutils.md5sums")
    shutil.copy("/var/lib/dpkg/info/coreutils.list", info / "coreutils.list")
    trojan = tmp_path / "true"
    trojan.write_bytes(Path("/usr/bin/true").read_bytes() + b"implant")
    out = tmp_path / "out"
    argv = " ".join(f"'{a}'" for a in PRESERVE_ARGV)
    script = (
        f"mount --bind {trojan} /usr/bin/true && mount --bind {info} /var/lib/dpkg/info && "
        f"exec {argv} --json -o {out} --only packages"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    evidence = Path(json.loads(result.stdout)["evidence_dir"])
    findings = [r for r in journal_records(evidence) if r.get("event") == "finding"]
    modified = [f for f in findings if f["rule"] == "package-file-modified"]
    assert [(f["source"]["path"], f["severity"]) for f in modified] in (
        [("/usr/bin/true", "HIGH")],
        [("/bin/true", "HIGH")],
    )
    assert Path("/usr/bin/true").read_bytes() != trojan.read_bytes()  # the host's is untouched


def test_not_in_the_minimal_profile_it_does_not_run(ctx: CollectContext) -> None:
    ctx.options = Options(log_profile=load_profile("minimal"))  # the default, standard, runs it
    PackagesCollector().collect(ctx)
    assert not (ctx.root / "artifacts/packages").exists()
    assert [label for label, _ in ctx.summary] == ["Packages"]


def test_a_change_anywhere_in_a_large_file_or_of_its_size_is_flagged(
    ctx: CollectContext, tmp_path: Path
) -> None:
    """The read stops at the first short read past the stat size: a change in the last
    byte of a file several buffers long, a file grown or shrunk since the package wrote
    it, all still differ from the database; an unchanged large file does not."""
    from collectors.filedigest import BUFFER

    root = tmp_path / "host"
    big = os.urandom(3 * BUFFER + 11)
    files = {"/usr/lib/libbig.so": big, "/usr/lib/libsame.so": big,
             "/usr/bin/grown": b"small", "/usr/bin/shrunk": b"a longer binary"}  # fmt: skip
    _db(root, "libs", files, {})
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/libbig.so").write_bytes(big[:-1] + bytes([big[-1] ^ 1]))
    (root / "usr/lib/libsame.so").write_bytes(big)
    (root / "usr/bin/grown").write_bytes(b"small" + b"\0" * BUFFER)
    (root / "usr/bin/shrunk").write_bytes(b"a longer")
    report = _check(ctx, root)
    assert sorted(r["path"] for r in report["modified"]) == [
        "/usr/bin/grown", "/usr/bin/shrunk", "/usr/lib/libbig.so",
    ]  # fmt: skip
    (row,) = [r for r in report["modified"] if r["path"] == "/usr/lib/libbig.so"]
    assert row["md5"] == _md5((root / "usr/lib/libbig.so").read_bytes())


def test_a_fifo_in_dpkg_cfg_d_is_skipped_not_opened(ctx: CollectContext, tmp_path: Path) -> None:
    """A FIFO planted among dpkg's configuration files would block a plain open for
    ever (and tell a waiting writer that a responder is reading); it is refused unopened,
    and the excludes of the real file beside it still apply."""
    root = tmp_path / "host"
    _db(root, "base", {"/usr/bin/sh": b"sh", "/usr/share/doc/base/README": b"doc"}, {})
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/sh").write_bytes(b"sh")
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
    (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text("path-exclude=/usr/share/doc/*\n")
    os.mkfifo(root / "etc/dpkg/dpkg.cfg.d/aa-tripwire")
    reports: list[dict[str, Any]] = []
    check = threading.Thread(target=lambda: reports.append(_check(ctx, root)), daemon=True)
    check.start()
    check.join(30)
    if check.is_alive():  # blocked in the FIFO's open: let it go, then fail
        os.close(os.open(root / "etc/dpkg/dpkg.cfg.d/aa-tripwire", os.O_WRONLY | os.O_NONBLOCK))
        check.join(10)
        raise AssertionError("the packages check opened a FIFO in dpkg.cfg.d and blocked")
    assert reports[0]["missing"] == [] and reports[0]["modified"] == []
