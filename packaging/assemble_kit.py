"""Turn PyInstaller's one-folder bundle into the responder kit and sign it.

Run by ``packaging/build-kit`` with the build venv's Python (it uses the project's own
signing code). Writes ``OUT/preserve-kit/`` (executables, ``_internal/``, README-KIT.txt,
kit.pub, KIT.json, ``evidence/``, SHA256SUMS + SHA256SUMS.sig) and
``OUT/preserve-kit.tar.gz``. The private key never goes into the kit."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import bundle_glibc

from agent.kitloader import KIT_SSH
from manifests.signing import Signer, grouped, public_key_pem
from manifests.sums import format_sums

KIT_NAME = "preserve-kit"
HERE = Path(__file__).resolve().parent
RUNPATH = re.compile(rb"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]")
ORIGIN = b"$ORIGIN"


def load_or_make_key(path: Path, create: bool, must_be_new: bool) -> Signer:
    passphrase = os.environb.get(b"PRESERVE_KEY_PASSPHRASE") or None
    if path.exists() and not must_be_new:
        return Signer.from_file(path, passphrase)
    if path.exists():
        sys.exit(f"build-kit: {path} exists; keys are never overwritten")
    if not create:
        sys.exit(f"build-kit: no key at {path}; use --new-key {path} to make one")
    signer = Signer.generate_ephemeral()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_pem(passphrase))
    path.with_suffix(".pub").write_bytes(public_key_pem(signer.public_key))
    state = "passphrase-protected" if passphrase else "NOT encrypted: keep it off shared disks"
    print(f"build-kit: new kit key {path} ({state})")
    return Signer(signer.private_key)


def elf_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def copy_ssh(kit: Path) -> Path:
    """The build machine's OpenSSH client into the kit (``agent/sinks/openssh.py``
    runs only this one, through the kit's loader: the host's ssh may be the
    attacker's). Copied before the search paths are rewritten and the C library is
    bundled, so both treat it as any other bundled program."""
    found = shutil.which("ssh", path="/usr/bin:/bin:/usr/local/bin")
    if found is None:
        sys.exit("build-kit: no ssh on this build machine (install openssh-client)")
    target = kit / KIT_SSH
    target.parent.mkdir(parents=True)
    shutil.copyfile(os.path.realpath(found), target)
    target.chmod(0o755)
    return target


def ssh_version(ssh: Path) -> str:
    done = subprocess.run([str(ssh), "-V"], capture_output=True, timeout=30)
    return done.stderr.decode(errors="replace").strip()[:200]


def neutralise_runpaths(root: Path) -> list[str]:
    """Point absolute RUNPATH/RPATH entries back into the kit.

    A library built elsewhere keeps its build machine's search path (pyenv's libpython
    says /root/.pyenv/versions/X/lib): on the host, the loader would look there first for
    libm and friends, so a library planted at that path would run inside the kit. The
    string is overwritten in place with ``$ORIGIN`` (the library's own folder)."""
    changed = []
    for path in elf_files(root):
        out = subprocess.run(
            ["readelf", "-d", str(path)], capture_output=True, check=True, timeout=60
        ).stdout
        for match in RUNPATH.finditer(out):
            value = match.group(1)
            if all(part.startswith(ORIGIN) for part in value.split(b":")):
                continue
            data = bytearray(path.read_bytes())
            needle = b"\0" + value + b"\0"
            if data.count(needle) != 1 or len(value) < len(ORIGIN):
                sys.exit(f"build-kit: cannot rewrite the search path {value!r} of {path}")
            start = data.index(needle) + 1
            data[start : start + len(value)] = ORIGIN.ljust(len(value), b"\0")
            path.write_bytes(data)
            changed.append(f"{path.relative_to(root).as_posix()}: {value.decode()}")
    return changed


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--launcher", type=Path, required=True)
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", type=Path)
    keys.add_argument("--new-key", type=Path)
    keys.add_argument("--key-default", type=Path)
    args = parser.parse_args()

    key_path = args.key or args.new_key or args.key_default
    kit = (args.out / KIT_NAME).resolve()
    if key_path.resolve().is_relative_to(kit):
        sys.exit("build-kit: the kit key must not be inside the kit")
    signer = load_or_make_key(key_path, create=args.key is None, must_be_new=bool(args.new_key))

    if kit.exists():
        for path in kit.rglob("*"):  # files are made read-only below; allow the rebuild
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(kit)
    args.out.mkdir(parents=True, exist_ok=True)
    # symlinks=False: copy what links point to, so the kit also fits a FAT/exFAT drive.
    # The frozen program and its libraries go under _internal/; the kit's entry points
    # are the static launcher, which starts them through the kit's own loader.
    shutil.copytree(args.bundle, kit / "_internal", symlinks=False)
    for name in ("preserve", "verify"):
        shutil.copyfile(args.launcher, kit / name)
        (kit / name).chmod(0o755)
    (kit / "evidence").mkdir()
    ssh = copy_ssh(kit)
    rewritten = neutralise_runpaths(kit)
    if rewritten:
        print(
            f"build-kit: {len(rewritten)} build-machine search paths rewritten to $ORIGIN "
            f"(e.g. {rewritten[0]})"
        )

    bundled = bundle_glibc.bundle(kit, elf_files(kit / "_internal"))
    bundle_glibc.check_self_contained(kit, elf_files(kit / "_internal"))
    glibc_dir = kit / bundle_glibc.GLIBC_DIR
    floor, floor_from = bundle_glibc.kernel_floor([glibc_dir / "libc.so.6", kit / "preserve"])
    print(f"build-kit: bundled loader and {len(bundled)} host libraries: {', '.join(bundled)}")
    dist = metadata.distribution("preserve")
    info = {
        "format": "preserve-kit/1",
        "version": dist.version,
        "built": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_host_glibc": " ".join((os.confstr("CS_GNU_LIBC_VERSION") or "unknown").split()),
        "build_host_os": os_name(),
        "build_host_kernel": platform.release(),
        "python": platform.python_version(),
        "pyinstaller": metadata.version("pyinstaller"),
        "arch": platform.machine(),
        # The kit brings its own glibc (the build machine's): the host's glibc does not
        # matter, only the kernel, whose oldest version the ELF ABI tags say.
        "glibc_bundled": bundle_glibc.glibc_release(glibc_dir / "libc.so.6"),
        "kernel_floor": floor,
        "kernel_floor_from": floor_from,
        "loader": {
            "path": f"{bundle_glibc.GLIBC_DIR}/{bundle_glibc.LOADER}",
            "sha256": sha256_file(glibc_dir / bundle_glibc.LOADER),
            "preload_path": bundle_glibc.PRELOAD_PATCH[:-1].decode(),
        },
        "bundled_libraries": bundled,
        "ssh": {"path": KIT_SSH, "sha256": sha256_file(ssh), "version": ssh_version(ssh)},
        "key_fingerprint": signer.fingerprint,
        "collectors": sorted(e.name for e in dist.entry_points if e.group == "preserve.collectors"),
        "entry_points": sorted(f"{e.group}:{e.name}" for e in dist.entry_points),
    }
    (kit / "KIT.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    (kit / "kit.pub").write_bytes(public_key_pem(signer.public_key))
    # The built kit must start; its --help also says which optional lines of the card
    # apply ("?--option" lines are kept only when this build has that option).
    usage = subprocess.run(
        [str(kit / "preserve"), "--help"], capture_output=True, check=True, timeout=120
    ).stdout.decode()
    lines = []
    for line in (HERE / "README-KIT.txt").read_text().splitlines(keepends=True):
        if line.startswith("?"):
            option, _, line = line[1:].partition(" ")
            if option not in usage.split():
                continue
            line = line.lstrip(" ")
            line = "   " + line
        lines.append(line)
    card = "".join(lines)
    for key, value in {**info, "fingerprint": grouped(signer.fingerprint)}.items():
        card = card.replace("{" + key + "}", str(value))
    (kit / "README-KIT.txt").write_text(card)

    for path in kit.rglob("*"):
        if path.is_file():
            path.chmod(0o555 if os.access(path, os.X_OK) else 0o444)
    entries = [
        (p.relative_to(kit).as_posix(), sha256_file(p))
        for p in sorted(kit.rglob("*"))
        if p.is_file() and p.parent != kit / "evidence"
    ]
    sums = format_sums(entries)
    (kit / "SHA256SUMS").write_bytes(sums)
    (kit / "SHA256SUMS.sig").write_bytes(signer.sign(sums))
    for name in ("SHA256SUMS", "SHA256SUMS.sig"):
        (kit / name).chmod(0o444)

    tarball = args.out / f"{KIT_NAME}.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=6) as tar:

        def owner(t: tarfile.TarInfo) -> tarfile.TarInfo:
            t.uid = t.gid = 0
            t.uname = t.gname = "root"
            return t

        tar.add(kit, arcname=KIT_NAME, filter=owner)

    size = tree_size(kit)
    print(f"build-kit: {kit} ({len(entries)} files, {size / 1e6:.1f} MB unpacked)")
    print(f"build-kit: {tarball.resolve()} ({tarball.stat().st_size / 1e6:.1f} MB)")
    print(
        f"build-kit: runs on Linux {info['arch']} kernel {floor} or newer ({floor_from}), "
        "any or no host glibc"
    )
    print(f"build-kit: kit key fingerprint {grouped(signer.fingerprint)}")
    print(f"build-kit: sums sha256 {hashlib.sha256(sums).hexdigest()}")


if __name__ == "__main__":
    main()
