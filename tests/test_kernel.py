"""The ``kernel`` collector against real kernel state: eBPF programs and a link loaded by
this test, module lists made to disagree inside a private mount namespace (a tmpfs over
``/sys/module``, a crafted copy bound over ``/proc/modules``), the real taint value, and
``/etc/ld.so.preload`` planted through an overlay of ``/etc`` in a private namespace,
hidden from libc by a hooking library compiled here. The machine's own ``/etc``,
``/sys`` and ``/proc`` are never changed."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bpfload
import pytest
from conftest import PRESERVE_CODE, ROOT, journal_records, requires_root

from collectors import _linux, bpf, kmodules
from collectors.context import CollectContext
from collectors.kernel import KernelCollector

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="Linux kernel views"),
    requires_root,
]

HIDE_PRELOAD_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
/* chkrootkit looks at /etc/ld.so.preload: pretend it (or HIDE) is not there, to libc */
static int hidden(const char *p) { return p && strstr(p, HIDE); }
#define OPEN(fn, ...) int fn(__VA_ARGS__, int flags, ...) { \
    static int (*real)(); va_list ap; va_start(ap, flags); int mode = va_arg(ap, int); \
    va_end(ap); if (hidden(path)) { errno = ENOENT; return -1; } \
    if (!real) real = dlsym(RTLD_NEXT, #fn);
OPEN(open, const char *path) return real(path, flags, mode); }
OPEN(open64, const char *path) return real(path, flags, mode); }
OPEN(openat, int dir, const char *path) return real(dir, path, flags, mode); }
OPEN(openat64, int dir, const char *path) return real(dir, path, flags, mode); }
FILE *fopen(const char *path, const char *m) {
    static FILE *(*real)(const char *, const char *);
    if (hidden(path)) { errno = ENOENT; return NULL; }
    if (!real) real = dlsym(RTLD_NEXT, "fopen");
    return real(path, m);
}
"""


def _findings(root: Path, rule: str) -> list[dict]:
    return [r for r in journal_records(root) if r.get("event") == "finding" and r["rule"] == rule]


def _kernel_json(root: Path) -> dict:
    return json.loads((root / "artifacts/volatile/kernel.json").read_bytes())


def test_loaded_programs_and_link_appear_with_their_attach_point(ctx: CollectContext) -> None:
    prog = bpfload.load("socket_filter", "pt_sockfilt")
    sock = bpfload.attach_socket(prog)
    tracer = bpfload.load("raw_tracepoint", "pt_rawtp")
    link = bpfload.attach_raw_tracepoint(tracer, "sys_enter")
    try:
        KernelCollector().collect(ctx)
    finally:
        for fd in (prog, tracer, link):
            os.close(fd)
        sock.close()
    ebpf = _kernel_json(ctx.root)["ebpf"]
    assert ebpf["unreadable"] == {} and ebpf["refused"] == []
    by_name = {p["name"]: p for p in ebpf["programs"]}
    assert by_name["pt_sockfilt"]["type"] == "socket_filter"
    rawtp = by_name["pt_rawtp"]
    assert rawtp["type"] == "raw_tracepoint" and rawtp["id"] > 0
    ours = [lk for lk in ebpf["links"] if lk["prog_id"] == rawtp["id"]]
    assert ours and ours[0]["type"] == "raw_tracepoint" and ours[0]["target"] == "sys_enter"
    # the fdinfo view: this process holds both programs and the link
    assert os.getpid() in ebpf["held_by"]["programs"][str(rawtp["id"])]
    assert os.getpid() in ebpf["held_by"]["links"][str(ours[0]["id"])]
    noted = {f["program"]["name"]: f for f in _findings(ctx.root, "ebpf-program")}
    assert noted["pt_rawtp"]["severity"] == "LOW"
    assert "sys_enter" in noted["pt_rawtp"]["message"]
    assert _findings(ctx.root, "ebpf-hidden") == []  # every held object is in the walk


def test_stock_host_gives_no_module_or_preload_finding(ctx: CollectContext) -> None:
    KernelCollector().collect(ctx)
    data = _kernel_json(ctx.root)
    mods = data["modules"]
    assert mods["hidden_from_proc_modules"] == mods["hidden_from_sys_module"] == []
    for rule in ("module-hidden", "module-hidden-from-libc", "ld-so-preload-hidden"):
        assert _findings(ctx.root, rule) == []
    # taint: the real value, decoded
    value = int(Path("/proc/sys/kernel/tainted").read_text())
    assert data["taint"]["value"] == value
    assert data["taint"]["flags"] == _linux.decode_taint(value)
    assert bool(_findings(ctx.root, "kernel-tainted")) == bool(value)


@pytest.mark.parametrize(
    ("value", "letters"),
    [
        (0, ""),
        (1, "P"),
        ((1 << 12) | (1 << 13), "OE"),
        (1 << 9, "W"),
        ((1 << 19) | (1 << 15), "KJ"),
        (1 << 25, "?"),  # a newer kernel's bit is kept, not dropped
    ],
)
def test_taint_decoder(value: int, letters: str) -> None:
    flags = _linux.decode_taint(value)
    assert "".join(f["letter"] for f in flags) == letters
    assert sum(1 << f["bit"] for f in flags) == value
    assert all(f["meaning"] for f in flags)


def test_module_compare_and_orphan_taint() -> None:
    listed = [
        {"name": "ext4", "state": "Live", "taint": ""},
        {"name": "vboxdrv", "state": "Live", "taint": "OE"},
        {"name": "loading", "state": "Loading", "taint": ""},
    ]
    sysfs = {"ext4": {}, "vboxdrv": {"taint": "OE"}, "diamorphine": {"initstate": "live"}}
    assert kmodules.compare(listed, sysfs) == (["diamorphine"], [])
    assert kmodules.compare(listed, {"ext4": {}}) == ([], ["vboxdrv"])
    views = kmodules.ModuleViews(proc=listed, sys=sysfs)
    assert kmodules.orphan_taints((1 << 12) | (1 << 13), views) == []
    assert kmodules.orphan_taints(1 << 12, kmodules.ModuleViews(proc=listed[:1])) == ["O"]


def _in_private_mounts(script: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-ec", script],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )


def _preserve(out: Path, *args: str) -> str:
    argv = [sys.executable, "-c", PRESERVE_CODE, "--json", "-q", "-o", str(out), *args]
    return " ".join(shlex.quote(a) for a in argv)


def _evidence(result: subprocess.CompletedProcess[bytes]) -> Path:
    assert result.returncode in (0, 1), result.stderr.decode()
    return Path(json.loads(result.stdout.splitlines()[-1])["evidence_dir"])


def _fake_sysfs(root: Path, extra: dict[str, dict[str, str]]) -> None:
    """A /sys/module with every module the kernel lists now, a built-in's directory (no
    initstate: never a finding) and ``extra``."""
    listed = kmodules.proc_modules_raw() or []
    entries = {m["name"]: {"initstate": "live", "coresize": str(m["size"])} for m in listed}
    entries["builtin_thing"] = {"parameters/debug": "0"}
    entries.update(extra)
    for name, files in entries.items():
        for rel, text in files.items():
            (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / name / rel).write_text(text + "\n")


def test_a_module_missing_from_proc_modules_is_a_high_finding(tmp_path: Path) -> None:
    fake = tmp_path / "sysmodule"
    _fake_sysfs(fake, {"diamorphine": {"initstate": "live", "coresize": "16384", "taint": "OE"}})
    result = _in_private_mounts(
        f"mount -t tmpfs none /sys/module && cp -a {fake}/. /sys/module/ && "
        + _preserve(tmp_path / "out", "--only", "kernel")
    )
    evidence = _evidence(result)
    hidden = _findings(evidence, "module-hidden")
    assert [f["module"] for f in hidden] == ["diamorphine"]
    assert hidden[0]["severity"] == "HIGH"
    degraded = [r for r in journal_records(evidence) if r.get("event") == "degraded"]
    assert any(r["view"] == "kernel-modules" and "diamorphine" in r["reason"] for r in degraded)
    mods = _kernel_json(evidence)["modules"]
    assert "builtin_thing" not in mods["sys_module_loadable"]  # built-in: not loadable
    assert Path("/sys/module/diamorphine").exists() is False  # the host's sysfs untouched


@pytest.mark.skipif(not Path("/proc/modules").exists(), reason="kernel without modules")
def test_a_module_missing_from_sys_module_is_a_high_finding(tmp_path: Path) -> None:
    crafted = tmp_path / "modules"
    crafted.write_bytes(
        Path("/proc/modules").read_bytes() + b"ghostmod 16384 0 - Live 0x0000000000000000 (OE)\n"
    )
    result = _in_private_mounts(
        f"mount --bind {crafted} /proc/modules && "
        + _preserve(tmp_path / "out", "--only", "kernel")
    )
    evidence = _evidence(result)
    assert [f["module"] for f in _findings(evidence, "module-hidden")] == ["ghostmod"]


def _overlay_etc(tmp_path: Path, preload: str) -> str:
    """Shell lines that lay an overlay on /etc (in the caller's private namespace) whose
    upper layer holds ``ld.so.preload``."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    (upper / "ld.so.preload").write_text(preload)
    return f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && "


def test_preload_file_is_read_raw_and_flagged(tmp_path: Path) -> None:
    result = _in_private_mounts(
        _overlay_etc(tmp_path, "/nonexistent/libhide.so\n")
        + _preserve(tmp_path / "out", "--only", "kernel")
    )
    evidence = _evidence(result)
    found = _findings(evidence, "ld-so-preload")
    assert found and found[0]["entries"] == ["/nonexistent/libhide.so"]
    stored = evidence / found[0]["artifact"]
    assert stored.read_bytes() == b"/nonexistent/libhide.so\n"
    assert _findings(evidence, "ld-so-preload-hidden") == []  # libc saw the same
    assert not Path("/etc/ld.so.preload").exists()  # only inside the namespace


def _hiding_library(tmp_path: Path, name: str) -> Path:
    """A library whose open/openat/fopen say ENOENT for any path containing ``name``."""
    lib, src = tmp_path / "libhide.so", tmp_path / "hide.c"
    src.write_text(HIDE_PRELOAD_C)
    cmd = ["gcc", "-shared", "-fPIC", f'-DHIDE="{name}"', "-o", lib, src, "-ldl"]
    subprocess.run(cmd, check=True)
    return lib


def test_preload_hidden_from_libc_is_a_high_finding(tmp_path: Path) -> None:
    lib = _hiding_library(tmp_path, "ld.so.preload")
    result = _in_private_mounts(
        _overlay_etc(tmp_path, "/nonexistent/libhide.so\n")
        # the check that the hook works: libc's cat cannot see the file
        + f"! LD_PRELOAD={lib} cat /etc/ld.so.preload 2>/dev/null && "
        + f"LD_PRELOAD={lib} "
        + _preserve(tmp_path / "out", "--only", "kernel")
    )
    evidence = _evidence(result)
    hidden = _findings(evidence, "ld-so-preload-hidden")
    assert hidden and hidden[0]["severity"] == "HIGH"
    assert hidden[0]["entries"] == ["/nonexistent/libhide.so"]
    degraded = [r for r in journal_records(evidence) if r.get("event") == "degraded"]
    assert any(r["view"] == "ld.so.preload" and r["severity"] == "high" for r in degraded)


def test_ebpf_compare_finds_a_held_program_missing_from_the_walk(
    ctx: CollectContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program a process holds that the ID walk does not return (what an eBPF rootkit
    hooking bpf() would make) is HIGH; the walk itself is real, only its answer is cut."""
    prog = bpfload.load("socket_filter", "pt_hidden")
    real = bpf.inventory

    def cut() -> bpf.Inventory:
        inv = real()
        inv.programs = [p for p in inv.programs if p["name"] != "pt_hidden"]
        return inv

    monkeypatch.setattr(bpf, "inventory", cut)
    try:
        KernelCollector().collect(ctx)
    finally:
        os.close(prog)
    hidden = _findings(ctx.root, "ebpf-hidden")
    assert hidden and os.getpid() in hidden[0]["pids"] and hidden[0]["kind"] == "program"


def test_ebpf_refused_to_an_unprivileged_run_is_degraded() -> None:
    """Without CAP_SYS_ADMIN the kernel refuses the ID walk: recorded as a degraded view
    (what was refused, and why), not as an empty list of programs."""
    out = Path(tempfile.mkdtemp(prefix="kernel-nobody-", dir="/tmp"))
    try:
        out.chmod(0o777)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            + shlex.split(_preserve(out, "--only", "kernel")),
            capture_output=True,
            timeout=120,
            cwd=ROOT,
        )
        evidence = _evidence(result)
        degraded = {r["view"]: r for r in journal_records(evidence) if r.get("event") == "degraded"}
        assert "EPERM" in degraded["ebpf-programs"]["reason"]
        assert degraded["ebpf-programs"]["severity"] == "medium"
        assert _kernel_json(evidence)["ebpf"]["unreadable"]["links"].endswith("EPERM")
    finally:
        shutil.rmtree(out)


@pytest.mark.skipif(not Path("/proc/modules").exists(), reason="kernel without modules")
def test_proc_modules_hidden_from_libc_is_a_high_finding(tmp_path: Path) -> None:
    lib = _hiding_library(tmp_path, "/proc/modules")
    result = subprocess.run(
        ["sh", "-c", f"LD_PRELOAD={lib} " + _preserve(tmp_path / "out", "--only", "kernel")],
        capture_output=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    evidence = _evidence(result)
    listed = {m["name"] for m in kmodules.proc_modules_raw() or []}
    found = _findings(evidence, "module-hidden-from-libc")
    if listed:
        assert found and set(found[0]["modules"]) <= listed


@pytest.mark.parametrize(
    ("value", "severity", "orphans"),
    [(1 << 12, "MEDIUM", ["O"]), (1 << 9, "LOW", []), ((1 << 13) | (1 << 0), "MEDIUM", ["P", "E"])],
)
def test_taint_findings_from_a_crafted_value(
    tmp_path: Path, value: int, severity: str, orphans: list[str]
) -> None:
    """A taint value bound over /proc/sys/kernel/tainted in a private mount namespace:
    decoded, judged by kind, and a module taint no listed module carries is called out."""
    crafted = tmp_path / "tainted"
    crafted.write_text(f"{value}\n")
    result = _in_private_mounts(
        f"mount --bind {crafted} /proc/sys/kernel/tainted && "
        + _preserve(tmp_path / "out", "--only", "kernel")
    )
    evidence = _evidence(result)
    tainted = _findings(evidence, "kernel-tainted")
    assert len(tainted) == 1 and tainted[0]["severity"] == severity
    assert tainted[0]["taint"]["value"] == value
    orphan = _findings(evidence, "taint-without-module")
    assert (orphan[0]["letters"] if orphan else []) == orphans
    assert "/proc/sys/kernel/tainted" not in Path("/proc/self/mountinfo").read_text()


PIN_AND_COLLECT = """
import os, subprocess, sys
sys.path.insert(0, "tests")
import bpfload
fd = bpfload.load("raw_tracepoint", "pt_pinned")
bpfload.pin(fd, sys.argv[1] + "/pt_pinned")
os.close(fd)  # only the pin keeps it alive now
sys.exit(subprocess.run(sys.argv[2:]).returncode)
"""


def test_a_pinned_program_is_listed_with_its_pin(tmp_path: Path) -> None:
    """A program no process holds, kept alive by a pin in a bpf file system mounted in a
    private mount namespace (the pin, and the program, go when the namespace does)."""
    bpffs = tmp_path / "bpffs"
    bpffs.mkdir()
    collect = _preserve(tmp_path / "out", "--only", "kernel")
    result = _in_private_mounts(
        f"mount -t bpf bpf {bpffs} && {shlex.quote(sys.executable)} -c "
        f"{shlex.quote(PIN_AND_COLLECT)} {bpffs} {collect}"
    )
    evidence = _evidence(result)
    ebpf = _kernel_json(evidence)["ebpf"]
    pins = [p for p in ebpf["pinned"] if p["path"] == f"{bpffs}/pt_pinned"]
    assert pins and pins[0]["kind"] == "program"
    prog = [p for p in ebpf["programs"] if p["id"] == pins[0]["id"]]
    assert prog and prog[0]["name"] == "pt_pinned"
    assert _findings(evidence, "ebpf-hidden") == []


def test_a_syscall_without_a_known_number_is_enosys_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On an architecture whose numbers rawsys does not know, a view becomes unreadable
    (recorded) instead of failing the collector."""
    from collectors import rawsys

    assert rawsys.syscall("no_such_call", 1) == -errno.ENOSYS
    monkeypatch.setattr(rawsys, "NR", {k: v for k, v in rawsys.NR.items() if k != "openat"})
    with pytest.raises(OSError) as raised:
        rawsys.read_file(b"/proc/sys/kernel/tainted", 64)
    assert raised.value.errno == errno.ENOSYS
