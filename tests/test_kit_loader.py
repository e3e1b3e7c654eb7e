"""The kit's processes run no code the host's loader injects, and depend on nothing of
the host's userland: a real hooking library (tests/rootkit_hook.c, compiled here) in
/etc/ld.so.preload of a private mount namespace, strace of kit runs, a bare chroot.

The kit is built once per session (tests/kit_build.py). Everything that touches /etc or
mounts happens inside namespaces the tests make; the machine's own /etc is never written.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, journal_records, requires_root
from kit_build import run_kit

from agent.kitloader import GLIBC_DIR, LOADER, loader_problem

HERE = Path(__file__).resolve().parent
DEV_PRESERVE = Path(sys.executable).parent / "preserve"


def _need(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (tests/run.sh installs them)")


def _mounts_possible() -> None:
    probe = subprocess.run(
        ["unshare", "-m", "-p", "-f", "--mount-proc", "true"], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make mount and PID namespaces: {probe.stderr.decode().strip()}")


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hooking library, compiled from C for this test run."""
    _need("gcc")
    out = tmp_path_factory.mktemp("rootkit") / "libhide.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", out, HERE / "rootkit_hook.c", "-ldl"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def _evidence(stdout: str) -> tuple[dict, Path]:
    summary = json.loads(stdout)
    return summary, Path(summary["evidence_dir"])


def _process(evidence: Path, pid: int) -> dict | None:
    with open(evidence / "artifacts/volatile/processes.jsonl") as f:
        for line in f:
            record = json.loads(line)
            if record["pid"] == pid:
                return record
    return None


@requires_root
@pytest.mark.slow
def test_a_preloading_rootkit_subverts_the_host_but_not_the_kit(
    kit: Path, hook: Path, tmp_path: Path
) -> None:
    """/etc/ld.so.preload, LD_PRELOAD and LD_AUDIT all name a library that hides
    ``evil-miner``, the preload list and its own line in /proc/self/maps. The host's
    ls, cat and the pip-installed tool are subverted (and the tool says so); the kit
    sees the process, keeps the preload list, flags it and has no foreign code mapped."""
    _need("unshare", "mount")
    _mounts_possible()
    kit_out, pip_out = tmp_path / "kit-out", tmp_path / "pip-out"
    only = ["--only", "processes,system,persistence"]
    commands = [
        [str(kit / "preserve"), "--json", "-q", "-o", str(kit_out), *only],
        [str(kit / "preserve"), "selfcheck"],
        ["/bin/ls", "/proc"],
        ["/bin/cat", "/etc/ld.so.preload"],
        [str(DEV_PRESERVE), "--json", "-q", "-o", str(pip_out), *only],
    ]
    work = tmp_path / "ns"
    work.mkdir()
    done = subprocess.run(
        ["unshare", "-m", "-p", "-f", "--mount-proc", sys.executable,
         HERE / "kit_rootkit_ns.py", work, hook, json.dumps(commands)],
        capture_output=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = json.loads(done.stdout)
    pid = report["pid"]
    collected, selfcheck, ls, cat, pip = report["runs"]

    # The control: the same setup does subvert dynamically linked programs.
    assert str(pid) not in ls["stdout"].split(), "the hook did not hide the process from ls"
    assert ls["rc"] == 0 and "1" in ls["stdout"].split()
    assert cat["rc"] != 0 and "No such file" in cat["stderr"]

    # (a) the kit sees the hidden process, as any other.
    assert collected["rc"] == 0, collected["stderr"]
    summary, evidence = _evidence(collected["stdout"])
    record = _process(evidence, pid)
    assert record is not None and record["name"] == "evil-miner", record
    # (b) the preload list is preserved (raw and as a file) and flagged.
    preserved = evidence / "artifacts/persistence/etc/ld.so.preload"
    assert preserved.read_text() == f"{hook}\n"
    assert (evidence / "artifacts/volatile/preload-list.raw").read_text() == f"{hook}\n"
    by_view = {d["view"]: d for d in summary["degraded"]}
    assert by_view["ld.so.preload"]["severity"] == "high"
    assert str(hook) in by_view["ld.so.preload"]["reason"]
    assert "LD_PRELOAD, LD_AUDIT" in by_view["loader-environment"]["reason"]
    assert "injected-code" not in by_view
    # (c) nothing of the host is mapped into the kit's process (read past libc).
    loader = json.loads((evidence / "artifacts/volatile/loader.json").read_text())
    assert loader["host_libraries"] == [] and loader["unexpected"] == [], loader
    assert loader["loader"] == str(kit.resolve() / GLIBC_DIR / LOADER)
    assert loader["environment_dropped"] == ["LD_PRELOAD", "LD_AUDIT"]
    assert "libhide" not in json.dumps(loader["host_libraries"])
    start = journal_records(evidence)[0]
    assert start["kit"]["loader"]["unexpected"] == []
    events = [r for r in journal_records(evidence) if r.get("event") == "degraded"]
    assert any(e["view"] == "ld.so.preload" for e in events)
    assert selfcheck["rc"] == 0 and "Host libs:  none" in selfcheck["stdout"]
    assert "ignored it" in selfcheck["stdout"]

    # The pip-installed tool is hooked, cannot avoid it, and says so loudly.
    pip_summary, pip_evidence = _evidence(pip["stdout"])
    pip_views = {d["view"]: d for d in pip_summary["degraded"]}
    assert pip_views["injected-code"]["severity"] == "high", pip_views
    assert str(hook) in pip_views["injected-code"]["reason"]
    assert "hidden from libc" in pip_views["injected-code"]["reason"]
    assert "hidden or altered" in pip_views["ld.so.preload"]["reason"]
    assert f"pid {pid}" in pip_views["processes"]["reason"]  # crossview's raw getdents
    assert (pip_evidence / "artifacts/volatile/preload-list.raw").read_text() == f"{hook}\n"
    pip_loader = json.loads((pip_evidence / "artifacts/volatile/loader.json").read_text())
    assert str(hook) in pip_loader["hidden_from_libc"]
    assert pip_loader["ld_so_preload_hidden"] is True


def _kit_opens(trace_prefix: Path, kit: Path, cwd: Path) -> list[tuple[str, str]]:
    """Every path the KIT's own processes opened or looked up (strace -ff -y files, one a
    process), made absolute; lines after a successful execve of a host program belong to
    that program."""
    inside = (str(kit), str(kit.resolve()))
    call = re.compile(
        r"^(open|openat|access|faccessat2?|stat|lstat|newfstatat|statx|readlink)\("
        r'(?:(AT_FDCWD|\d+)(?:<([^>]*)>)?, )?"([^"]*)"'
    )
    paths = []
    files = sorted(glob.glob(f"{trace_prefix}.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    for number, name in enumerate(files):
        ours = number > 0  # the first process is env; the rest descend from the kit
        for line in Path(name).read_text(errors="replace").splitlines():
            m = re.match(r'^execve\("([^"]+)".*= 0$', line)
            if m:
                ours = m.group(1).startswith(inside)
                continue
            m = call.match(line)
            if ours and m and m.group(4):
                base = m.group(3) or str(cwd)
                paths.append((m.group(1), os.path.normpath(os.path.join(base, m.group(4)))))
    return paths


@pytest.mark.parametrize(
    "args",
    [["--version"], ["selfcheck"], ["-q", "-o", "{out}", "--only", "processes,network,system"]],
    ids=["version", "selfcheck", "volatile"],
)
def test_strace_kit_opens_no_host_library(kit: Path, tmp_path: Path, args: list[str]) -> None:
    """No shared object outside the kit, no loader cache, no preload list, no locale."""
    _need("strace")
    prefix = tmp_path / "trace"
    argv = [a.replace("{out}", str(tmp_path / "out")) for a in args]
    done = subprocess.run(
        ["strace", "-ff", "-qq", "-y", "-e", "trace=%file,execve", "-o", prefix,
         "env", "-i", "PATH=/usr/bin:/bin", "LANG=de_DE.UTF-8", kit / "preserve", *argv],
        capture_output=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
    calls = _kit_opens(prefix, kit, tmp_path)
    opened = [p for _, p in calls]
    assert any(str(GLIBC_DIR) in p for p in opened), "the trace saw no library opened"
    # The bundled loader looked for its patched preload list, not the host's.
    assert ("access", "/proc/0/ld.preload") in calls, calls[:20]
    inside = (str(kit), str(kit.resolve()))
    host_libs = [
        p
        for p in opened
        if re.search(r"\.so(\.|$)", os.path.basename(p))
        and not p.startswith(inside)
        # the loader's patched default directories: looked in, and nothing can be there
        and not p.startswith(("/proc/0/", "/sys/"))
        and p != "/etc/ld.so.preload"  # read as evidence: checked below
    ]
    assert host_libs == [], host_libs
    assert "/etc/ld.so.cache" not in opened
    # The loader looks for its list with access(); the kit's code reads the host's list
    # only as evidence (openat, fstatat), never through the loader.
    assert ("access", "/etc/ld.so.preload") not in calls
    assert [p for p in opened if p.startswith(("/usr/lib/locale", "/usr/share/locale"))] == []


def test_the_bundled_loader_ignores_the_host_preload_list(kit: Path) -> None:
    """The loader's patch is checked the way every kit start checks it, and the check
    would catch the host's own (unpatched) loader."""
    loader = kit / GLIBC_DIR / LOADER
    assert loader_problem(loader) is None
    data = loader.read_bytes()
    assert b"/etc/ld.so.preload" not in data and data.count(b"/proc/0/ld.preload\0") == 1
    info = json.loads((kit / "KIT.json").read_text())
    import hashlib

    assert info["loader"]["sha256"] == hashlib.sha256(data).hexdigest()
    host = Path("/lib64/ld-linux-x86-64.so.2")
    if host.exists():
        assert "reads the host's /etc/ld.so.preload" in (loader_problem(host) or "")


@requires_root
def test_a_kit_with_an_unpatched_loader_is_refused(kit: Path, tmp_path: Path) -> None:
    copy = tmp_path / "kit"
    shutil.copytree(kit, copy)
    loader = copy / GLIBC_DIR / LOADER
    loader.chmod(0o755)
    data = loader.read_bytes().replace(b"/proc/0/ld.preload\0", b"/etc/ld.so.preload\0")
    loader.write_bytes(data)
    check = run_kit(copy, "preserve", "selfcheck", cwd=tmp_path)
    assert check.returncode == 1
    assert b"the loader reads the host's /etc/ld.so.preload" in check.stdout


@requires_root
@pytest.mark.slow
def test_the_kit_runs_in_a_chroot_holding_only_the_kit(kit: Path, tmp_path: Path) -> None:
    """Version, self-check and a volatile collection inside a chroot that has nothing but
    the kit and mounted /proc, /sys, /dev: no host library, no /etc, no shell."""
    _need("unshare", "chroot", "mount")
    _mounts_possible()
    root = tmp_path / "root"
    shutil.copytree(kit, root / "kit")
    for d in ("proc", "sys", "dev", "out"):
        (root / d).mkdir()
    script = (
        f"mount -t proc proc {root}/proc && mount --rbind /sys {root}/sys && "
        f"mount --rbind /dev {root}/dev && "
        f"chroot {root} /kit/preserve --version && chroot {root} /kit/preserve selfcheck && "
        f"chroot {root} /kit/preserve --json -q -o /out --only processes,network,system"
    )
    done = subprocess.run(
        ["unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-c", script],
        capture_output=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=300,
    )  # fmt: skip
    out = done.stdout.decode()
    assert done.returncode in (0, 1), out + done.stderr.decode()[-2000:]
    assert "preserve, version" in out and "OK: the kit at /kit is intact" in out
    summary = json.loads(out[out.index('{"chain_head"') :])
    assert summary["status"] in ("complete", "partial"), summary
    evidence = root / summary["evidence_dir"].lstrip("/")
    assert (evidence / "artifacts/volatile/processes.jsonl").stat().st_size > 0
    checked = run_kit(kit, "verify", evidence, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout.decode()


@requires_root
def test_the_kit_reads_an_overmounted_process_through_its_own_launcher(
    kit: Path, tmp_path: Path
) -> None:
    """The fresh-proc reader is a child of the kit: it must start (and it goes through the
    kit's launcher, since sys.executable -m cannot work in a frozen program)."""
    _need("unshare", "mount")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    script = (
        f"sleep 300 & P=$!; mount --bind {empty} /proc/$P; echo $P; "
        f"env -i PATH=/usr/bin:/bin {kit}/preserve -q --json -o {out} --only processes; "
        "kill $P"
    )
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, timeout=300,
    )  # fmt: skip
    lines = done.stdout.decode().splitlines()
    pid = int(lines[0])
    summary, evidence = _evidence(lines[1])
    record = _process(evidence, pid)
    assert record is not None and record.get("read_via") == "fresh-proc", record
    assert record["name"] == "sleep"


@requires_root
def test_the_kit_in_a_world_writable_directory_does_not_flag_itself(
    kit: Path, tmp_path: Path
) -> None:
    """Issue 16: a kit copied to /dev/shm runs its loader from there; its own process is
    this run's, not a suspect. The closing box's verify command works as printed."""
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path("/tmp")
    copy = base / f"preserve-kit-test-{os.getpid()}"
    shutil.copytree(kit, copy)
    try:
        done = run_kit(copy, "preserve", "--only", "processes,system", cwd=copy)
        assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
        text = (done.stdout + done.stderr).decode()
        evidence = Path(sorted((copy / "evidence").iterdir())[-1])
        table = (evidence / "artifacts/volatile/processes.jsonl").read_text().splitlines()
        ours = [r for r in map(json.loads, table) if str(r.get("exe") or "").startswith(str(copy))]
        assert len(ours) == 1 and ours[0].get("this_run") is True, ours
        assert ours[0]["flags"] == []
        pid = ours[0]["pid"]
        for record in journal_records(evidence):
            if record["type"] in ("event", "finding"):
                assert record.get("pid") != pid, record
                assert f"pid {pid} " not in json.dumps(record), record
        line = next(x for x in text.splitlines() if "Check it with" in x)
        command = line.split("Check it with", 1)[1].strip(" │|:")
        assert command.startswith("./verify "), command
        checked = subprocess.run(
            shlex.split(command), cwd=copy, capture_output=True, timeout=120,
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_a_clean_dev_run_flags_no_injected_code(tmp_path: Path) -> None:
    """Without a preload the loader view is quiet (no false alarm on every host)."""
    done = subprocess.run(
        [DEV_PRESERVE, "--json", "-q", "-o", tmp_path, "--only", "processes"],
        capture_output=True, cwd=ROOT, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("LD_")},
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr.decode()
    views = {d["view"] for d in json.loads(done.stdout)["degraded"]}
    if os.path.exists("/etc/ld.so.preload") and os.path.getsize("/etc/ld.so.preload"):
        pytest.skip("this machine has a preload list")
    assert not views & {"injected-code", "ld.so.preload", "loader-environment"}, views
