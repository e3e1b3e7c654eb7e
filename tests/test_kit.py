"""The USB responder kit, built for real once per session and run as a responder would:
clean environment, another working directory, no virtualenv, from a read-only mount."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, journal_records, preserve, requires_root
from kit_build import run_kit

from agent.kitloader import GLIBC_DIR, KIT_SSH
from collectors.registry import load_collectors

OVERRIDE = "--i-know-the-kit-is-modified"
LOADER = f"{GLIBC_DIR}/ld-linux-x86-64.so.2"


def require_mount_namespaces() -> None:
    """Skip (with the reason) where root may not make mount namespaces or mounts, e.g.
    an unprivileged container."""
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "probe", "/tmp"],
        capture_output=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount here: {probe.stderr.decode().strip()}")


def kit_copy(kit: Path, dest: Path) -> Path:
    shutil.copytree(kit, dest, symlinks=True)
    return dest


def fixture_tree(base: Path) -> Path:
    src = base / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    return src


def start_record(evidence: Path) -> dict:
    return journal_records(evidence)[0]


def test_kit_layout_size_and_no_private_key(kit: Path) -> None:
    names = {p.name for p in kit.iterdir()}
    assert {"preserve", "verify", "_internal", "README-KIT.txt", "kit.pub", "KIT.json"} <= names
    assert {"SHA256SUMS", "SHA256SUMS.sig", "evidence"} <= names
    info = json.loads((kit / "KIT.json").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["kernel_floor"]), info
    assert re.fullmatch(r"2\.\d+", info["glibc_bundled"]), info
    assert info["loader"]["preload_path"] == "/proc/0/ld.preload"
    assert info["build_host_glibc"].startswith("glibc ")
    assert info["python"].startswith("3.")
    size = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    assert size < 60_000_000, size
    key = kit.parent / "key" / "kit.key"
    if key.exists():  # built by the fixture: the private key's body is in no kit file
        body = b"".join(key.read_bytes().splitlines()[1:-1])
        assert len(body) > 40
        for p in kit.rglob("*"):
            if p.is_file():
                assert body not in p.read_bytes(), p
    assert (kit.parent / "preserve-kit.tar.gz").stat().st_size > 1_000_000
    card = (kit / "README-KIT.txt").read_text()
    fp = info["key_fingerprint"]
    assert " ".join(fp[i : i + 4] for i in range(0, 64, 4)) in card
    assert "Signer fingerprint" in card and "Chain head" in card and "{" not in card
    assert "?" + "--" not in card  # optional lines resolved against this build's options


def test_kit_collects_in_a_clean_environment_and_its_verify_agrees(
    kit: Path, tmp_path: Path
) -> None:
    src = fixture_tree(tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    out = tmp_path / "out"
    result = run_kit(
        kit, "preserve", "--json", "-o", out, "--only", "files", "--path", src, cwd=elsewhere
    )
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    evidence = Path(summary["evidence_dir"])
    assert (evidence / "artifacts/files" / src.relative_to("/") / "sub/b.bin").read_bytes() == (
        src / "sub/b.bin"
    ).read_bytes()
    checked = run_kit(
        kit, "verify", evidence, "--fingerprint", summary["fingerprint"], cwd=elsewhere
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert b"OK:" in checked.stdout
    # The journal's first record names the kit build.
    sums_hash = hashlib.sha256((kit / "SHA256SUMS").read_bytes()).hexdigest()
    start = start_record(evidence)
    assert start["type"] == "start"
    assert start["kit"]["sums_sha256"] == sums_hash
    assert start["kit"]["check"] == "ok" and start["kit"]["override"] is False
    assert start["kit"]["version"] == json.loads((kit / "KIT.json").read_text())["version"]
    assert start["tool"]["code_sha256"] == sums_hash
    assert summary["kit"]["sums_sha256"] == sums_hash
    # Nothing comes from the host: not even glibc (the kit brings its own loader).
    assert start["kit"]["loader"]["unexpected"] == [], start["kit"]["loader"]
    assert start["kit"]["loader"]["host_libraries"] == [], start["kit"]["loader"]
    assert start["kit"]["loader"]["loader"] == str(kit.resolve() / LOADER)
    assert list(elsewhere.iterdir()) == []


def test_kit_loads_the_same_collectors_as_the_dev_install(kit: Path, tmp_path: Path) -> None:
    """Entry points are carried into the kit generically: collectors merged later appear
    in the kit without changing the build."""
    result = run_kit(kit, "preserve", "-o", tmp_path, "--only", "no-such-collector", cwd=tmp_path)
    assert result.returncode == 2
    known = re.search(rb"known: ([\w, -]+)", result.stderr)
    assert known, result.stderr
    in_kit = {n.strip() for n in known.group(1).decode().split(",")}
    assert in_kit == set(load_collectors(lambda n, e: None))
    assert in_kit == set(json.loads((kit / "KIT.json").read_text())["collectors"])


def test_kit_knows_the_same_isolation_methods_as_the_dev_install(kit: Path, tmp_path: Path) -> None:
    """The preserve.isolation entry points are carried generically too."""
    from importlib import metadata

    args = ("--isolate", "--dry-run", "--isolation-method", "no-such-method", "-o", tmp_path)
    result = run_kit(kit, "preserve", *args, cwd=tmp_path)
    if b"--isolation-method" not in result.stderr:
        pytest.skip("this build has no --isolation-method option")
    known = re.search(rb"known: ([\w, :-]+)", result.stderr)
    assert result.returncode == 2 and known, result.stderr
    in_kit = {n.strip() for n in known.group(1).decode().split(",")}
    dev = {e.name for e in metadata.entry_points(group="preserve.isolation")}
    assert dev and dev <= in_kit, (dev, in_kit)
    assert preserve(*args).stderr == result.stderr


def test_selfcheck_reports_the_kit(kit: Path, tmp_path: Path) -> None:
    info = json.loads((kit / "KIT.json").read_text())
    result = run_kit(
        kit, "preserve", "selfcheck", "--fingerprint", info["key_fingerprint"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout.decode()
    out = result.stdout.decode()
    assert f"kernel {info['kernel_floor']} or newer" in out
    assert "Host libs:  none" in out and "/proc/0/ld.preload" in out
    assert "pinned, matches" in out and "OK: the kit" in out
    wrong = run_kit(kit, "preserve", "selfcheck", "--fingerprint", "ab" * 32, cwd=tmp_path)
    assert wrong.returncode == 1 and b"DOES NOT MATCH" in wrong.stdout


def test_the_kit_carries_the_md5_lanes(kit: Path, tmp_path: Path) -> None:
    """The compiled MD5 engine is in the kit and runs there: selfcheck names the same best
    engine as the development install (hashlib only where the build had no compiler)."""
    from collectors.lanedigest import md5_engine

    result = run_kit(kit, "preserve", "selfcheck", cwd=tmp_path)
    assert f"MD5:        {md5_engine()} " in result.stdout.decode(), result.stdout.decode()
    assert any(p.name.startswith("_md5lanes") for p in kit.rglob("*.so")) == (
        md5_engine() != "hashlib"
    )


def test_the_kit_carries_the_timeline_lister(kit: Path, tmp_path: Path) -> None:
    """The compiled bodyfile lister is in the kit and chosen there, as in the development
    install (the Python lister only where the build had no compiler)."""
    from collectors.bodywalk import lister

    result = run_kit(kit, "preserve", "selfcheck", cwd=tmp_path)
    assert f"Timeline:   {lister()} lister" in result.stdout.decode(), result.stdout.decode()
    assert any(p.name.startswith("_bodylist") for p in kit.rglob("*.so")) == (lister() == "c")


def test_without_output_the_kit_writes_to_its_own_evidence_folder(
    kit: Path, tmp_path: Path
) -> None:
    copy = kit_copy(kit, tmp_path / "kit")
    src = fixture_tree(tmp_path)
    result = run_kit(copy, "preserve", "--json", "--only", "files", "--path", src, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    evidence = Path(json.loads(result.stdout)["evidence_dir"])
    assert evidence.parent == copy / "evidence"
    # Evidence in the kit's folder does not make the kit "modified".
    assert run_kit(copy, "preserve", "selfcheck", cwd=tmp_path).returncode == 0
    # ... and the kit refuses to collect itself into itself.
    inside = run_kit(copy, "preserve", "--only", "files", "--path", copy, cwd=tmp_path)
    assert inside.returncode == 2 and b"inside" in inside.stderr


def test_modified_kit_is_refused_unless_overridden_and_the_journal_says_so(
    kit: Path, tmp_path: Path
) -> None:
    copy = kit_copy(kit, tmp_path / "kit")
    card = copy / "README-KIT.txt"
    card.chmod(0o644)
    card.write_bytes(card.read_bytes() + b"tampered\n")
    src = fixture_tree(tmp_path)
    out = tmp_path / "out"

    check = run_kit(copy, "preserve", "selfcheck", cwd=tmp_path)
    assert check.returncode == 1
    assert b"FAIL README-KIT.txt: content differs" in check.stdout

    refused = run_kit(copy, "preserve", "-o", out, "--only", "files", "--path", src, cwd=tmp_path)
    assert refused.returncode == 2
    assert b"modified" in refused.stderr and OVERRIDE.encode() in refused.stderr
    assert b"Traceback" not in refused.stderr
    assert not out.exists() or not list(out.iterdir())
    verify_refused = run_kit(copy, "verify", tmp_path, cwd=tmp_path)
    assert verify_refused.returncode == 2 and b"modified" in verify_refused.stderr

    allowed = run_kit(
        copy,
        "preserve",
        "--json",
        "-o",
        out,
        "--only",
        "files",
        "--path",
        src,
        OVERRIDE,
        cwd=tmp_path,
    )
    assert allowed.returncode == 0, allowed.stderr.decode()
    evidence = Path(json.loads(allowed.stdout)["evidence_dir"])
    kit_field = start_record(evidence)["kit"]
    assert kit_field["check"] == "modified" and kit_field["override"] is True
    assert any("README-KIT.txt" in p for p in kit_field["problems"])
    # The other commands of a modified kit are refused too, and obey the override.
    sub = run_kit(copy, "preserve", "verify", evidence, cwd=tmp_path)
    assert sub.returncode == 2 and b"modified" in sub.stderr
    sub = run_kit(copy, "preserve", OVERRIDE, "verify", evidence, cwd=tmp_path)
    assert sub.returncode == 0, sub.stdout.decode() + sub.stderr.decode()
    checked = run_kit(copy, "verify", OVERRIDE, evidence, cwd=tmp_path)
    assert checked.returncode == 0 and b"modified kit" in checked.stderr


def test_added_file_in_the_kit_is_a_modification(kit: Path, tmp_path: Path) -> None:
    copy = kit_copy(kit, tmp_path / "kit")
    (copy / "_internal" / "sitecustomize.py").write_text("print('planted')\n")
    with open(os.path.join(os.fsencode(copy), b"bad-\xff-name"), "wb") as f:
        f.write(b"x")
    check = run_kit(copy, "preserve", "selfcheck", cwd=tmp_path)
    assert check.returncode == 1
    assert b"_internal/sitecustomize.py: added" in check.stdout
    # A hostile (non-UTF-8) name must not break the journal when the override is used.
    src = fixture_tree(tmp_path)
    run = run_kit(
        copy, "preserve", "--json", "-o", tmp_path / "out", "--only", "files", "--path", src,
        OVERRIDE, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    problems = start_record(Path(json.loads(run.stdout)["evidence_dir"]))["kit"]["problems"]
    assert "bad-\\xff-name: added (not in the signed sums)" in problems, problems


WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
PSEUDO = ("/proc/", "/sys/", "/dev/")
MUTATING = (
    "creat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat",
    "rmdir", "link", "linkat", "symlink", "symlinkat", "truncate", "mknod", "mknodat",
    "chmod", "fchmodat", "chown", "fchownat", "utimensat",
)  # fmt: skip


# What the kit may open on the host, besides the output, what it collects and pseudo
# filesystems: the time zone, host identity files and the preload list (read as evidence,
# never obeyed). No library (the kit brings its own
# loader and glibc), no loader cache or preload list, no locale, no other configuration
# (openssl.cnf!), no library search in build-machine paths, no plug-in directories.
HOST_READS_ALLOWED = re.compile(
    r"^/etc/(ld\.so\.preload|localtime|machine-id|hostname|os-release"
    r"|nsswitch\.conf|passwd|group|host\.conf|resolv\.conf|hosts)$"
    r"|^/usr/share/zoneinfo/|^/usr/lib/os-release$"
)


def _paths_opened(trace: str, kit: Path) -> set[str]:
    """Every path the kit's traced processes tried to open, access or execute, found or
    not (not ``env``'s, which runs before it execs the kit in the same process)."""
    found = set()
    ours: dict[str, bool] = {}
    for line in trace.splitlines():
        pid = line.split(" ", 1)[0]
        started = re.match(r'^\d+\s+execve\("([^"]+)".*= 0$', line)
        if started:
            ours[pid] = started.group(1).startswith((str(kit), str(kit.resolve())))
        if not ours.setdefault(pid, bool(ours)):  # the first process is env
            continue
        m = re.match(
            r"^\d+\s+(open|openat|access|faccessat2?|execve)\((.*?)(?:\)\s+=| <unfinished)", line
        )
        if not m:
            continue
        args = m.group(2)
        base = re.match(r"^(?:AT_FDCWD|\d+)(?:<([^>]*)>)?,\s*", args)
        rest = args[base.end() :] if base else args
        name = re.match(r'"((?:[^"\\]|\\.)*)"', rest)
        if name:
            path = name.group(1)
            if not path.startswith("/"):
                path = os.path.join((base and base.group(1)) or "/?", path)
            found.add(os.path.normpath(path))
    return found


def _paths_written(trace: str) -> list[tuple[str, str]]:
    """(syscall, absolute path) for every successful call that writes a name or a file.
    strace -y prints directory fds as ``N</path>``, so relative names can be resolved."""
    found = []
    for line in trace.splitlines():
        # Under -f a call can be split: "<unfinished ...>" now, "<... resumed>" later.
        # An unfinished call counts as successful (the test errs on the strict side).
        m = re.match(r"^\d+\s+(\w+)\((.*?)(?:\)\s+=\s+(-?\d+)| <unfinished \.\.\.>$)", line)
        if not m or (m.group(3) or "").startswith("-"):
            continue
        call, args = m.group(1), m.group(2)
        if call in ("open", "openat"):
            if not any(flag in args for flag in WRITE_FLAGS):
                continue
        elif call not in MUTATING:
            continue
        base = re.match(r"^(?:AT_FDCWD|\d+)(?:<([^>]*)>)?,\s*", args)
        rest = args[base.end() :] if base else args
        for name in re.findall(r'"((?:[^"\\]|\\.)*)"', rest):
            path = (
                name
                if name.startswith("/")
                else os.path.join((base and base.group(1)) or "?", name)
            )
            found.append((call, os.path.normpath(path)))
    return found


@requires_root
@pytest.mark.parametrize("scenario", ["files", "volatile"])
def test_footprint_nothing_written_outside_the_output(
    kit: Path, tmp_path: Path, scenario: str
) -> None:
    """strace -f sees every file the kit's processes open for writing, create, rename or
    delete; private /tmp, /var/tmp, /dev/shm and /root (a mount namespace, so that other
    processes' files do not count) catch anything left there; find -newer covers the kit
    and the working directory. The volatile collectors may run host programs, but only
    those they record as ``action`` records in the journal."""
    if not shutil.which("strace") or not shutil.which("unshare"):
        pytest.skip("strace and unshare are needed (.ci/run installs them)")
    require_mount_namespaces()
    src = fixture_tree(tmp_path)
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    trace = tmp_path / "trace"
    mark = tmp_path / "MARK"
    mark.write_bytes(b"")
    time.sleep(0.02)
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable,
         ROOT / "tests" / "kit_footprint.py", f"{kit.resolve()}:{tmp_path.resolve()}", "--",
         "strace", "-f", "-qq", "-y", "-s", "4096", "-o", trace,
         "-e", "trace=%file,%desc,execve",
         "env", "-i", "PATH=/usr/bin:/bin", kit / "preserve", "--json", "-q", "-o", out,
         *(["--only", "files", "--path", src] if scenario == "files"
           else ["--only", "processes,network,system"])],
        capture_output=True, cwd=cwd, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["status"] in (0, 1), result.stderr.decode()
    evidence = Path(json.loads(result.stdout.splitlines()[0])["evidence_dir"])
    journaled = {
        r["argv"][0]
        for r in journal_records(evidence)
        if r["type"] == "action" and r.get("action") == "run-command"
    }
    assert "/tmp" in report["private"] and "/root" in report["private"]
    assert report["left"] == [], report
    text = trace.read_text(errors="replace")
    written = _paths_written(text)
    assert any(p.startswith(str(out) + "/") for _, p in written), "strace saw no writes at all"
    outside = [
        (c, p)
        for c, p in written
        if not p.startswith(str(out) + "/") and p != str(out) and not p.startswith(PSEUDO)
    ]
    assert outside == [], outside
    # No host program is run but env, the kit's own executable and what the journal shows.
    programs = set(re.findall(r'execve\("([^"]+)"', text))
    assert programs <= {"/usr/bin/env", str(kit / "preserve"), str(kit / LOADER), *journaled}, (
        programs
    )
    if scenario == "files":  # reading the host is the volatile collectors' job
        # Nothing is read from the host but identity files (and what is collected).
        ours = (str(kit.resolve()), str(tmp_path.resolve()), str(kit), str(tmp_path))
        host_reads = {
            p
            for p in _paths_opened(text, kit)
            if not p.startswith(PSEUDO)
            and not any(p == o or p.startswith(o + "/") for o in ours)
            and p not in ("/usr/bin/env", "/bin/env")
        }
        assert {p for p in host_reads if not HOST_READS_ALLOWED.match(p)} == set(), host_reads
    newer = subprocess.run(
        ["find", kit, cwd, "-xdev", "-newer", mark, "-not", "-path", f"{kit}/evidence*"],
        capture_output=True,
        timeout=60,
    ).stdout.split()
    assert newer == [], newer


@requires_root
def test_kit_on_a_read_only_mount_collects_to_a_writable_output(kit: Path, tmp_path: Path) -> None:
    require_mount_namespaces()
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", kit, ro], check=True, timeout=30)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", ro], check=True, timeout=30)
        assert subprocess.run(["touch", ro / "x"], capture_output=True).returncode != 0
        src = fixture_tree(tmp_path)
        out = tmp_path / "out"
        assert run_kit(ro, "preserve", "selfcheck", cwd=tmp_path).returncode == 0
        result = run_kit(
            ro, "preserve", "--json", "-o", out, "--only", "files", "--path", src, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr.decode()
        evidence = json.loads(result.stdout)["evidence_dir"]
        assert run_kit(ro, "verify", evidence, cwd=tmp_path).returncode == 0
        # Without -o the default is the kit's own (read-only) folder: a clear error.
        default = run_kit(ro, "preserve", "--only", "files", "--path", src, cwd=tmp_path)
        assert default.returncode != 0
        assert b"cannot write evidence" in default.stderr and b"Traceback" not in default.stderr
    finally:
        subprocess.run(["umount", ro], check=True, timeout=30)


def test_dev_install_warns_when_the_output_is_on_a_fixed_host_disk(tmp_path: Path) -> None:
    from agent.outputdisk import fixed_disk_of

    if fixed_disk_of(tmp_path) is None:
        pytest.skip(f"{tmp_path} is not on a fixed block device here")
    src = fixture_tree(tmp_path)
    result = preserve("-o", tmp_path / "out", "--only", "files", "--path", src)
    assert result.returncode == 0
    assert b"fixed disk of this host" in result.stderr
    if os.path.isdir("/dev/shm") and fixed_disk_of(Path("/dev/shm")) is None:
        shm = Path("/dev/shm") / f"preserve-test-{os.getpid()}"
        try:
            quiet = preserve("-o", shm, "--only", "files", "--path", src)
            assert quiet.returncode == 0 and b"fixed disk" not in quiet.stderr
        finally:
            shutil.rmtree(shm, ignore_errors=True)


def test_selfcheck_outside_a_kit_is_a_usage_error(tmp_path: Path) -> None:
    result = preserve("selfcheck")
    assert result.returncode == 2 and b"--kit" in result.stderr


@requires_root
def test_output_reached_through_a_bind_mount_of_a_collected_tree_is_refused(
    tmp_path: Path,
) -> None:
    require_mount_namespaces()
    src = fixture_tree(tmp_path)
    alias = tmp_path / "alias"
    alias.mkdir()
    subprocess.run(["mount", "--bind", src, alias], check=True, timeout=30)
    try:
        result = preserve("-o", alias / "sub" / "out", "--only", "files", "--path", src)
        assert result.returncode == 2, result.stderr
        assert b"inside" in result.stderr
        assert not (src / "sub" / "out").exists()
    finally:
        subprocess.run(["umount", alias], check=True, timeout=30)


def _fake_sysfs(base: Path, disk_path: str, removable: str, partition: bool) -> Path:
    """A /sys/dev/block/MAJ:MIN link to a fake device directory, as the kernel lays it out."""
    disk = base / "devices" / disk_path
    disk.mkdir(parents=True)
    (disk / "removable").write_text(removable + "\n")
    target = disk
    if partition:
        target = disk / (disk.name + "1")
        target.mkdir()
        (target / "partition").write_text("1\n")
    link = base / "dev-block" / "8:1"
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(target)
    return link


@pytest.mark.parametrize(
    ("disk_path", "removable", "partition", "expected"),
    [
        ("pci0000:00/0000:00:1f.2/ata1/host0/block/sda", "0", True, False),
        ("pci0000:00/0000:00:14.0/usb2/2-1/host6/block/sdb", "0", True, True),
        ("pci0000:00/0000:00:1f.2/ata2/host1/block/sdc", "1", False, True),
        ("virtual/block/vda", "0", False, False),
    ],
)
def test_removable_heuristic(
    tmp_path: Path, disk_path: str, removable: str, partition: bool, expected: bool
) -> None:
    from agent.outputdisk import _disk_removable

    link = _fake_sysfs(tmp_path, disk_path, removable, partition)
    assert _disk_removable(link) is expected


def test_device_mapper_is_removable_only_if_all_its_disks_are(tmp_path: Path) -> None:
    from agent.outputdisk import _disk_removable

    usb = _fake_sysfs(tmp_path / "a", "pci0/usb1/1-1/host2/block/sdb", "0", False)
    fixed = _fake_sysfs(tmp_path / "b", "pci0/ata1/host0/block/sda", "0", False)
    dm = tmp_path / "devices" / "virtual" / "block" / "dm-0"
    (dm / "slaves").mkdir(parents=True)
    (dm / "removable").write_text("0\n")
    (dm / "slaves" / "sdb").symlink_to(usb.resolve())
    assert _disk_removable(dm) is True
    (dm / "slaves" / "sda").symlink_to(fixed.resolve())
    assert _disk_removable(dm) is False


@pytest.mark.parametrize("victim", ["KIT.json", "SHA256SUMS.sig"])
def test_removing_the_kit_description_or_signature_does_not_skip_the_check(
    kit: Path, tmp_path: Path, victim: str
) -> None:
    copy = kit_copy(kit, tmp_path / "kit")
    (copy / victim).unlink()
    src = fixture_tree(tmp_path)
    refused = run_kit(
        copy, "preserve", "-o", tmp_path / "out", "--only", "files", "--path", src, cwd=tmp_path
    )
    assert refused.returncode == 2, refused.stderr.decode()
    assert b"modified" in refused.stderr
    assert run_kit(copy, "preserve", "selfcheck", cwd=tmp_path).returncode == 1


def test_the_tarball_unpacks_to_an_intact_kit(kit: Path, tmp_path: Path) -> None:
    tarball = kit.parent / "preserve-kit.tar.gz"
    subprocess.run(["tar", "-xzf", tarball, "-C", tmp_path], check=True, timeout=120)
    unpacked = tmp_path / "preserve-kit"
    assert (unpacked / "evidence").is_dir()
    result = run_kit(unpacked, "preserve", "selfcheck", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout.decode()
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["sums_sha256"] == hashlib.sha256((kit / "SHA256SUMS").read_bytes()).hexdigest()


def test_a_library_the_host_preloads_never_reaches_the_kit_and_is_journaled(
    kit: Path, tmp_path: Path
) -> None:
    """The launcher drops LD_PRELOAD before any loader runs; the journal says it was set
    (the name, never the value). tests/test_kit_loader.py does /etc/ld.so.preload."""
    candidates = sorted(Path("/").glob("usr/lib/x86_64-linux-gnu/libz.so.1*")) + sorted(
        Path("/").glob("lib/x86_64-linux-gnu/libz.so.1*")
    )
    if not candidates:
        pytest.skip("no host libz to preload")
    foreign = str(candidates[0])
    src = fixture_tree(tmp_path)
    result = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", f"LD_PRELOAD={foreign}", kit / "preserve",
         "--json", "-o", tmp_path / "out", "--only", "files", "--path", src],
        capture_output=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    loader = start_record(Path(json.loads(result.stdout)["evidence_dir"]))["kit"]["loader"]
    assert loader["unexpected"] == [] and loader["host_libraries"] == [], loader
    assert loader["environment_dropped"] == ["LD_PRELOAD"] and loader["ld_preload"] is False
    assert foreign not in json.dumps(loader)
    check = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", f"LD_PRELOAD={foreign}", kit / "preserve", "selfcheck"],
        capture_output=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert b"LD_PRELOAD was set" in check.stdout and b"ignored it" in check.stdout
    assert b"Host libs:  none" in check.stdout


def test_no_bundled_library_searches_outside_the_kit(kit: Path) -> None:
    """A build-machine RUNPATH (pyenv's libpython has one) would make the host's loader
    look for libraries in a directory an attacker can plant files in."""
    if not shutil.which("readelf"):
        pytest.skip("readelf (binutils) is not installed")
    elf = [p for p in kit.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"]
    assert len(elf) > 20
    bad = {}
    for path in elf:
        out = subprocess.run(["readelf", "-d", path], capture_output=True, timeout=60).stdout
        for value in re.findall(rb"Library r(?:un)?path: \[([^\]]*)\]", out):
            if any(not part.startswith(b"$ORIGIN") for part in value.split(b":")):
                bad[str(path.relative_to(kit))] = value
    assert bad == {}


def test_kernel_floor_is_plausible_for_this_host(kit: Path) -> None:
    """The kit just ran here, so its kernel floor cannot be above this kernel; glibc has
    not supported kernels older than 2.6.32 for a decade, so lower means the scan failed."""
    floor = tuple(
        int(x) for x in json.loads((kit / "KIT.json").read_text())["kernel_floor"].split(".")
    )
    here = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:3])
    assert (2, 6, 32) <= floor <= here


def test_a_hostile_kit_description_cannot_break_the_journal(kit: Path, tmp_path: Path) -> None:
    """With the override, whatever a modified KIT.json says is recorded as text."""
    copy = kit_copy(kit, tmp_path / "kit")
    info = copy / "KIT.json"
    info.chmod(0o644)
    info.write_text(json.dumps({"version": 1.5, "built": ["x"]}))
    src = fixture_tree(tmp_path)
    run = run_kit(
        copy, "preserve", "--json", "-o", tmp_path / "out", "--only", "files", "--path", src,
        OVERRIDE, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    kit_field = start_record(Path(json.loads(run.stdout)["evidence_dir"]))["kit"]
    assert kit_field["version"] == "1.5" and kit_field["check"] == "modified"


def test_the_kit_carries_its_own_ssh(kit: Path) -> None:
    """The SFTP sink's ssh is the build machine's, in the kit, started by the kit's own
    loader with the kit's libraries only (agent/sinks/openssh.py never runs the host's)."""
    info = json.loads((kit / "KIT.json").read_text())
    ssh = kit / KIT_SSH
    assert info["ssh"]["path"] == KIT_SSH and "OpenSSH" in info["ssh"]["version"], info["ssh"]
    assert hashlib.sha256(ssh.read_bytes()).hexdigest() == info["ssh"]["sha256"]
    loader = str(kit / LOADER)
    libs = f"{kit / GLIBC_DIR}:{kit / '_internal'}"
    start = ["env", "-i", loader, "--inhibit-cache", "--library-path", libs]
    version = subprocess.run([*start, ssh, "-V"], capture_output=True, timeout=30)
    assert version.returncode == 0 and b"OpenSSH" in version.stderr, version.stderr
    listed = subprocess.run([*start, "--list", ssh], capture_output=True, timeout=30)
    paths = [line.split("=>")[1].split()[0] for line in listed.stdout.decode().splitlines()
             if "=>" in line]  # fmt: skip
    assert paths and all(Path(p).resolve().is_relative_to(kit.resolve()) for p in paths), paths
