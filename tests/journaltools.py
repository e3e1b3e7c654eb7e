"""Making real journal files for the tests with systemd's own writer: entries in the
Journal Export Format, written by ``systemd-journal-remote`` (Debian package
systemd-journal-remote), and read back with ``journalctl --file X -o json --all``, the
reference our parser must match field for field.

systemd 252 picks its compression at build time (ZSTD here), so XZ and LZ4 objects are
made by rewriting one uncompressed data object in place with the other codec (the
object shrinks, nothing else moves) and setting the header's flag: journalctl then
decodes it with its own XZ/LZ4 code, and our output must still match."""

from __future__ import annotations

import ctypes
import json
import lzma
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

REMOTE = "/lib/systemd/systemd-journal-remote"
BOOT = "0123456789abcdef0123456789abcdef"
BIG = b"BIG=" + b"journal field that compresses well " * 80


def need_tools() -> None:
    if not os.path.exists(REMOTE) or not shutil.which("journalctl"):
        pytest.skip("needs systemd-journal-remote and journalctl (apt systemd-journal-remote)")


def export(
    entries: list[list[bytes]], start_us: int = 1_700_000_000_000_000, step_us: int = 1_000_000
) -> bytes:
    """Journal Export Format: every field in the binary form, so any byte can be a value."""
    out = bytearray()
    for i, fields in enumerate(entries):
        out += b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n" % (
            start_us + i * step_us, 1_000_000 + i, BOOT.encode()
        )  # fmt: skip
        for f in fields:
            name, _, value = f.partition(b"=")
            out += name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
        out += b"\n"
    return bytes(out)


def write_journal(
    path: Path, entries: list[list[bytes]], compact: bool, compress: bool = True, **times: int
) -> Path:
    src = path.with_suffix(".export")
    src.write_bytes(export(entries, **times))
    env = {**os.environ, "SYSTEMD_JOURNAL_COMPACT": "1" if compact else "0"}
    subprocess.run(
        [REMOTE, f"--compress={'yes' if compress else 'no'}", f"--output={path}", str(src)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return path


def journalctl(path: Path) -> list[dict]:
    out = subprocess.run(
        ["journalctl", "--file", str(path), "-o", "json", "--all"], capture_output=True, check=True
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def _lz4(data: bytes) -> bytes:
    lib = ctypes.CDLL("liblz4.so.1")
    cap = lib.LZ4_compressBound(len(data))
    dst = ctypes.create_string_buffer(cap)
    n = lib.LZ4_compress_default(data, dst, len(data), cap)
    assert n > 0
    return struct.pack("<Q", len(data)) + dst.raw[:n]


def recompress(path: Path, marker: bytes, algo: str, compact: bool) -> None:
    """Rewrite the uncompressed data object whose payload starts with ``marker``."""
    d = bytearray(path.read_bytes())
    pos = d.find(marker)
    assert pos > 0, marker
    start = pos - (72 if compact else 64)
    kind, _, size = struct.unpack_from("<BB6xQ", d, start)
    assert kind == 1
    payload = bytes(d[pos : start + size])
    packed = lzma.compress(payload, format=lzma.FORMAT_XZ) if algo == "XZ" else _lz4(payload)
    assert len(packed) < len(payload)
    flag = 1 if algo == "XZ" else 2
    d[pos : pos + len(packed)] = packed
    struct.pack_into("<BB6xQ", d, start, 1, flag, pos - start + len(packed))
    (incompatible,) = struct.unpack_from("<I", d, 12)
    struct.pack_into("<I", d, 12, incompatible | flag)
    path.write_bytes(d)
