"""Put the build machine's dynamic loader and C library into the kit, and prove the kit
then needs nothing of the host's.

A dynamically linked program is started by the host's ``ld.so``, which maps whatever
``/etc/ld.so.preload``, ``LD_PRELOAD`` and ``LD_AUDIT`` name into it before ``main``: the
user-space rootkit's door. The kit therefore carries its own loader and every library
outside the PyInstaller bundle that any bundled file needs (found with ``ldd``, plus the
glibc parts that are only ever ``dlopen``-ed: NSS modules, ``libgcc_s`` for thread
cancellation), and its static launcher (``packaging/launcher.c``) starts the frozen
program through that loader with ``--inhibit-cache --library-path``.

The loader's compiled-in ``/etc/ld.so.preload`` and default library directories are
overwritten, same length, with paths that cannot hold a file (agent/kitloader.py). Run by
``assemble_kit.py`` with the build venv's Python."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from agent.kitloader import (
    GLIBC_DIR,
    LOADER,
    PRELOAD_ORIGINAL,
    PRELOAD_PATCH,
    SYSTEM_DIRS_ORIGINAL,
    SYSTEM_DIRS_PATCH,
    loader_problem,
)

# glibc parts loaded only at run time (never in a DT_NEEDED list): NSS (getpwuid), DNS,
# and libgcc_s, which pthread_exit/cancel dlopen for unwinding.
RUNTIME_ONLY = (
    "libnss_files.so.2",
    "libnss_dns.so.2",
    "libresolv.so.2",
    "libgcc_s.so.1",
    "libutil.so.1",
    "librt.so.1",
    "libanl.so.1",
)
_LDD_LINE = re.compile(rb"^\s*(\S+)(?: => (\S+))? \(0x[0-9a-f]+\)$")
_ABI_TAG = re.compile(rb"OS: Linux, ABI: (\d+)\.(\d+)\.(\d+)")
_GLIBC_RELEASE = re.compile(rb"release version (\d+\.\d+)")


def _run(argv: list[str], **kw: object) -> bytes:
    return subprocess.run(argv, capture_output=True, check=True, timeout=120, **kw).stdout  # type: ignore[call-overload, no-any-return]


def _host_needs(elf: Path) -> dict[str, Path]:
    """soname -> host path of what the host's loader would map for ``elf``."""
    done = subprocess.run(["ldd", str(elf)], capture_output=True, timeout=120)
    found: dict[str, Path] = {}
    for line in done.stdout.splitlines():
        m = _LDD_LINE.match(line)
        if not m:
            continue
        name, target = m.group(1).decode(), m.group(2)
        path = Path((target or m.group(1)).decode())
        if path.is_absolute():
            found[LOADER if "ld-linux" in path.name else name] = path
    return found


def bundle(kit: Path, elf_files: list[Path]) -> list[str]:
    """Copy the loader and every host library the bundle needs into ``GLIBC_DIR``;
    returns their names. Libraries the bundle already has are not copied twice."""
    internal = kit / "_internal"
    target = kit / GLIBC_DIR
    target.mkdir(parents=True)
    have = {p.name for p in internal.iterdir()}
    needed: dict[str, Path] = {}
    for elf in elf_files:
        for name, path in _host_needs(elf).items():
            if name not in have and not path.resolve().is_relative_to(kit.resolve()):
                needed.setdefault(name, path)
    if LOADER not in needed:
        sys.exit(f"build-kit: ldd named no {LOADER}: is this an x86_64 glibc build machine?")
    libc_dir = needed["libc.so.6"].resolve().parent
    for name in RUNTIME_ONLY:
        if name not in needed and name not in have and (libc_dir / name).exists():
            needed[name] = libc_dir / name
    for name, path in sorted(needed.items()):
        shutil.copyfile(path.resolve(), target / name)
        (target / name).chmod(0o755)
    patch_loader(target / LOADER)
    return sorted(needed)


def patch_loader(loader: Path) -> None:
    """Point the loader's preload list and default library directories at paths that
    cannot exist, and prove it did."""
    data = loader.read_bytes()
    if data.count(PRELOAD_ORIGINAL) != 1 or SYSTEM_DIRS_ORIGINAL not in data:
        sys.exit(f"build-kit: {loader} is not a loader this build knows how to patch")
    data = data.replace(PRELOAD_ORIGINAL, PRELOAD_PATCH)
    data = data.replace(SYSTEM_DIRS_ORIGINAL, SYSTEM_DIRS_PATCH)
    loader.write_bytes(data)
    problem = loader_problem(loader)
    if problem:
        sys.exit(f"build-kit: {problem}")


def check_self_contained(kit: Path, elf_files: list[Path]) -> None:
    """Every bundled ELF file's dependencies, as the KIT's loader resolves them with the
    launcher's options, are files inside the kit; stops the build otherwise."""
    loader = kit / GLIBC_DIR / LOADER
    libs = f"{kit / GLIBC_DIR}:{kit / '_internal'}"
    for elf in elf_files:
        if elf == loader or elf.is_relative_to(kit / GLIBC_DIR) and elf.name.startswith("ld-"):
            continue
        if _is_static(elf):
            continue
        out = subprocess.run(
            [str(loader), "--inhibit-cache", "--library-path", libs, "--list", str(elf)],
            capture_output=True,
            timeout=120,
        )
        for line in out.stdout.splitlines():
            m = _LDD_LINE.match(line)
            if m and m.group(2) and not Path(m.group(2).decode()).resolve().is_relative_to(kit):
                sys.exit(f"build-kit: {elf.relative_to(kit)} would load {m.group(2).decode()}")
            if b"not found" in line:
                sys.exit(f"build-kit: {elf.relative_to(kit)}: {line.decode().strip()}")


def _is_static(elf: Path) -> bool:
    return b"INTERP" not in _run(["readelf", "-lW", str(elf)]) and b"(NEEDED)" not in _run(
        ["readelf", "-dW", str(elf)]
    )


def kernel_floor(files: list[Path]) -> tuple[str, str]:
    """The newest "for GNU/Linux X.Y.Z" ELF ABI tag among ``files`` (the bundled C
    library and the static launcher): the oldest kernel the kit starts on."""
    best: tuple[tuple[int, ...], str] = ((0,), "")
    for path in files:
        m = _ABI_TAG.search(_run(["readelf", "-nW", str(path)]))
        if m:
            version = tuple(int(x) for x in m.groups())
            if version > best[0]:
                best = (version, path.name)
    return ".".join(map(str, best[0])), best[1]


def glibc_release(libc: Path) -> str:
    m = _GLIBC_RELEASE.search(libc.read_bytes())
    return m.group(1).decode() if m else "unknown"
