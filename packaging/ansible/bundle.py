"""The fleet run's first step, on the controller: check the settings, then pack the kit
and the upload key into one self-unpacking shell bundle in the controller's memory.

Ansible's ``script`` transfer (its own file transfer, no Python on the host) carries the
bundle to the host's tmpfs; the bundle's shell header refuses to unpack anywhere but on a
memory file system, then unpacks with the host's ``tar``. Prints one JSON object:
``path`` (the bundle), ``dir`` (remove it after the run), ``fingerprint`` (the kit key,
from KIT.json, unless the operator pins one), ``run_id`` and ``summary`` (the CSV's
absolute path).

    bundle.py KIT KEY SUMMARY SINK HOST_KEY CASE EXAMINER

Stdlib only: it runs under the controller's Ansible Python."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HEADER_SIZE = 4096  # the shell header is padded to this, so the archive's offset is fixed
# The check that a directory is on a memory file system that allows exec, from
# /proc/self/mounts with shell built-ins only. Run by the playbook before Ansible's own
# transfer (so even its temporary copy never lands on a disk), and by the bundle again.
MEMCHECK = r"""memcheck() {
    best= fs= opts=
    while read -r _dev mnt type o _rest; do
        case $mnt in /) m=/ ;; *) m=$mnt/ ;; esac
        case "$1/" in
            "$m"*) if [ ${#mnt} -ge ${#best} ]; then best=$mnt fs=$type opts=$o; fi ;;
        esac
    done < /proc/self/mounts
    case $fs in
        tmpfs | ramfs) ;;
        *) echo "preserve-fleet: $1 is on '$fs', not in memory: nothing is put on the" \
                "host's disk (set preserve_memdir to a tmpfs)" >&2
           return 3 ;;
    esac
    case ",$opts," in
        *,noexec,*) echo "preserve-fleet: $1 ($best) is mounted noexec: the kit" \
                        "cannot run there (set preserve_memdir to another tmpfs)" >&2
                    return 3 ;;
    esac
}
"""
HEADER = (
    r"""#!/bin/sh
# preserve fleet bundle: the kit and the upload key, unpacked into memory only.
# usage: sh BUNDLE DIR   (DIR is created; its parent must be on a tmpfs or ramfs)
set -u
dir=$1
"""
    + MEMCHECK
    + r"""memcheck "${dir%/*}" || exit 3
umask 077
mkdir "$dir" || exit 3
if ! tail -c +@OFFSET@ "$0" | tar -xzf - -C "$dir"; then
    rm -rf "$dir"
    echo "preserve-fleet: could not unpack the kit into $dir (the host needs tar and gzip)" >&2
    exit 3
fi
read -r name < /proc/sys/kernel/hostname || name=
echo "unpacked into $dir"
echo "hostname: $name"
exit 0
"""
)
KEY_NAME = "upload.key"


def fail(message: str) -> None:
    print(f"preserve-fleet: {message}", file=sys.stderr)
    sys.exit(2)


def _openssh_cipher(text: str) -> str | None:
    """The cipher of an OpenSSH-format private key ('none' when unencrypted)."""
    body = "".join(line for line in text.splitlines() if line and "-----" not in line)
    try:
        blob = base64.b64decode(body)
    except ValueError:
        return None
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        return None
    length = int.from_bytes(blob[len(magic) : len(magic) + 4], "big")
    return blob[len(magic) + 4 : len(magic) + 4 + length].decode("ascii", "replace")


def check_key(path: Path) -> bytes:
    """The upload key must be readable and unencrypted: a passphrase would have to travel
    to every host (on a command line or in its environment) to be of any use."""
    try:
        data = path.read_bytes()
    except OSError as e:
        fail(f"preserve_sink_key {path}: {e.strerror}")
    text = data.decode("ascii", "replace")
    if "PRIVATE KEY" not in text:
        fail(f"preserve_sink_key {path}: not a private key (PEM or OpenSSH format)")
    cipher = _openssh_cipher(text)
    if "ENCRYPTED" in text or (cipher is not None and cipher != "none"):
        fail(
            f"preserve_sink_key {path} is passphrase-protected; the fleet run needs an "
            "unencrypted upload key for a drop-box account (see packaging/ansible/README.md)"
        )
    return data


def check_settings(argv: list[str]) -> tuple[Path, bytes, str]:
    if len(argv) != 7:
        fail("usage: bundle.py KIT KEY SUMMARY SINK HOST_KEY CASE EXAMINER")
    kit, key, summary, sink, host_key, case, examiner = argv
    kit_dir = Path(kit)
    try:
        info = json.loads((kit_dir / "KIT.json").read_text())
    except (OSError, ValueError) as e:
        fail(f"preserve_kit {kit}: not an unpacked kit (KIT.json: {e})")
    if not os.access(kit_dir / "preserve", os.X_OK):
        fail(f"preserve_kit {kit}: no executable 'preserve' in it")
    if not sink.startswith("sftp://"):
        fail(f"preserve_sink {sink!r}: expected sftp://USER@HOST:PORT/PATH")
    if not host_key.strip():
        fail("preserve_sink_host_key is empty: pin the server's key (ssh-keygen -lf)")
    if not case.strip() or not examiner.strip():
        fail("preserve_case and preserve_examiner must not be empty")
    out = Path(summary)
    if not out.is_absolute():
        fail(f"preserve_summary {summary}: give an absolute path (the shell's PWD is unknown)")
    if out.exists():
        fail(f"preserve_summary {summary} exists; give a new file (a summary is never overwritten)")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        fail(f"preserve_summary {summary}: {out.parent} is not a writable directory")
    return kit_dir, check_key(Path(key)), str(info.get("key_fingerprint") or "")


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build(kit: Path, key: bytes, where: Path) -> Path:
    header = HEADER.replace("@OFFSET@", str(HEADER_SIZE + 1)).encode()
    assert len(header) < HEADER_SIZE
    header += b"#" * (HEADER_SIZE - len(header) - 1) + b"\n"
    path = where / "bundle.sh"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(header)
        with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
            tar.add(kit, arcname="kit", filter=_root_owned)  # the kit exactly as signed
            entry = _root_owned(tarfile.TarInfo(KEY_NAME))
            entry.size, entry.mode, entry.mtime = len(key), 0o600, int(time.time())
            tar.addfile(entry, io.BytesIO(key))
    return path


def memory_dir() -> Path:
    """A private directory in the controller's memory when it has a /dev/shm, so the
    copy of the upload key in the bundle never reaches a disk there either."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="preserve-fleet-", dir=base))


def main() -> None:
    kit, key, fingerprint = check_settings(sys.argv[1:])
    summary = sys.argv[3]
    where = memory_dir()
    try:
        path = build(kit, key, where)
    except OSError as e:
        shutil.rmtree(where, ignore_errors=True)  # the partial copy of the key too
        fail(f"cannot build the kit bundle in {where}: {e}")
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    result = {
        "path": str(path),
        "dir": str(where),
        "fingerprint": fingerprint,
        "run_id": run_id,
        "summary": summary,
        "memcheck": MEMCHECK + 'memcheck "$1"',
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
