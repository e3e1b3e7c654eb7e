"""A hostile journal file: data objects that decompress to gigabytes (a few kilobytes of
ZSTD RLE blocks), an entry naming one huge object many times, and many distinct huge
objects that a cache by count would all keep. The parser runs in a child under an
address-space limit of 1 GiB, exporting each entry as the collector does (``json.dumps``):
it must finish, keep the entry's other fields and say what it left out."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from journaltools import need_tools, write_journal

from collectors.journalfile import JournalFile

MIB = 1024 * 1024
LIMIT = 1024 * MIB  # the child's RLIMIT_AS
_CHILD = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from collectors.journalcodec import DecodeBudget
from collectors.journalfile import JournalFile
fd = os.open(sys.argv[1], os.O_RDONLY)
jf = JournalFile.open(fd, {budget})
rows = []
for entry in jf.entries():
    line = json.dumps(entry, ensure_ascii=False).encode()
    rows.append({{k: len(v) for k, v in entry.items()}} | {{"line": len(line)}})
print(json.dumps({{"rows": rows, "problems": jf.problems, "not_decoded": jf.fields_not_decoded}}))
"""


def zstd_rle(prefix: bytes, size: int) -> bytes:
    """A ZSTD frame of ``prefix`` (a raw block) then ``size`` bytes of ``A`` in RLE blocks
    of 128 KiB, four bytes each: 2 GiB in 64 KiB."""
    out = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")  # magic, no content size, 128 KiB window
    out += struct.pack("<I", len(prefix) << 3)[:3] + prefix
    full, rest = divmod(size, 1 << 17)
    blocks = [1 << 17] * full + [rest] * bool(rest)
    for i, n in enumerate(blocks):
        out += struct.pack("<I", n << 3 | 2 | (i == len(blocks) - 1))[:3] + b"A"
    return bytes(out)


def plant(data: bytearray, marker: bytes, payload: bytes) -> int:
    """Replace the uncompressed data object whose payload starts with ``marker`` (a
    compact file) by a ZSTD one; its offset."""
    pos = data.find(marker)
    start = pos - 72
    kind, _, size = struct.unpack_from("<BB6xQ", data, start)
    assert kind == 1 and len(payload) <= start + size - pos
    data[pos : pos + len(payload)] = payload
    struct.pack_into("<BB6xQ", data, start, 1, 4, 72 + len(payload))
    (incompatible,) = struct.unpack_from("<I", data, 12)
    struct.pack_into("<I", data, 12, incompatible | 8)
    return start


def first_entry(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return next(JournalFile.open(fd).entry_offsets())
    finally:
        os.close(fd)


def parse_limited(path: Path, budget: str = "None", timeout: float = 300) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD.format(limit=LIMIT, budget=budget), str(path)],
        cwd=ROOT, capture_output=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return json.loads(result.stdout)


def test_a_zstd_field_of_gigabytes_is_not_decoded(tmp_path: Path) -> None:
    need_tools()
    fields = [b"MESSAGE=kept", b"P=" + b"p" * 70_000, b"AFTER=kept too"]
    path = write_journal(tmp_path / "t.journal", [fields], compact=True, compress=False)
    data = bytearray(path.read_bytes())
    plant(data, b"P=ppp", zstd_rle(b"P=", 2048 * MIB))
    path.write_bytes(bytes(data))
    got = parse_limited(path)
    [row] = got["rows"]
    assert row["MESSAGE"] == 4 and row["AFTER"] == 8 and "P" not in row
    assert got["not_decoded"] == 1
    assert any("ZSTD field larger than" in p for p in got["problems"]), got["problems"]


def test_decoded_size_is_bounded_per_entry_and_in_the_cache(tmp_path: Path) -> None:
    """Entry 0 names one 50 MiB object twenty times; entries 1-20 each have their own."""
    need_tools()
    big = 50 * MIB
    first = [b"MESSAGE=many", b"Q=" + b"q" * 3000] + [b"R%02d=x" % i for i in range(19)]
    rest = [[b"MESSAGE=one", b"S%02d=" % i + b"s" * 3000] for i in range(20)]
    path = write_journal(tmp_path / "t.journal", [first, *rest], compact=True, compress=False)
    data = bytearray(path.read_bytes())
    q = plant(data, b"Q=qqq", zstd_rle(b"Q=", big))
    for i in range(20):
        plant(data, b"S%02d=sss" % i, zstd_rle(b"S%02d=" % i, big))
    entry = first_entry(path)
    for n in range(len(first)):  # every item of entry 0 names Q's data object
        struct.pack_into("<I", data, entry + 64 + 4 * n, q)
    path.write_bytes(bytes(data))
    got = parse_limited(path)
    rows = got["rows"]
    assert len(rows) == 21
    assert rows[0]["Q"] == 2 and rows[0]["__PRESERVE_NOT_DECODED"] > 0  # two fit, 19 left out
    assert any("more than" in p for p in got["problems"])
    assert all(r[f"S{i:02d}"] == big for i, r in enumerate(rows[1:]))  # each kept whole


def test_decompression_stops_at_the_runs_budget(tmp_path: Path) -> None:
    """150 fields of 30 MiB in a few hundred kilobytes: 4.5 GiB to decode, minutes of the
    collector's time. Past the budget (here 120 MiB) fields stay compressed, named."""
    need_tools()
    n, big = 150, 30 * MIB
    entries = [[b"MESSAGE=%d" % i, b"T%03d=" % i + b"t" * 1000] for i in range(n)]
    path = write_journal(tmp_path / "t.journal", entries, compact=True, compress=False)
    data = bytearray(path.read_bytes())
    for i in range(n):
        plant(data, b"T%03d=ttt" % i, zstd_rle(b"T%03d=" % i, big))
    path.write_bytes(bytes(data))
    got = parse_limited(path, "DecodeBudget(120 * 1024 * 1024)", timeout=120)
    rows = got["rows"]
    assert len(rows) == n and all(r["MESSAGE"] == len(str(i)) for i, r in enumerate(rows))
    assert [f"T{i:03d}" in r for i, r in enumerate(rows)] == [True] * 4 + [False] * (n - 4)
    assert got["not_decoded"] == n - 4
    assert any("used up" in p for p in got["problems"])


def test_an_entry_array_naming_one_entry_again_and_again_yields_it_once(tmp_path: Path) -> None:
    """journald appends, so its entry array lists each entry once, in file order. One
    that names the same entry over and over (each of a million items costing a whole
    entry's decoding) or goes back gets each entry once, and says so."""
    need_tools()
    many = [[b"MESSAGE=entry %d" % i] for i in range(20)]
    path = write_journal(tmp_path / "t.journal", many, compact=True, compress=False)
    fd = os.open(path, os.O_RDONLY)
    try:
        jf = JournalFile.open(fd)
        offsets = list(jf.entry_offsets())
        array = jf.header.entry_array_offset
    finally:
        os.close(fd)
    data = bytearray(path.read_bytes())
    (size,) = struct.unpack_from("<Q", data, array + 8)
    room = (size - 24) // 4  # the first entry array: journald grows them as it goes
    items = [o for (o,) in struct.iter_unpack("<I", data[array + 24 : array + 24 + 4 * room])]
    assert room >= 4 and items == offsets[:room]
    for n in range(2, room):  # all but the first two name entry 2 again
        struct.pack_into("<I", data, array + 24 + 4 * n, offsets[1])
    path.write_bytes(bytes(data))
    fd = os.open(path, os.O_RDONLY)
    try:
        jf = JournalFile.open(fd)
        got = [e["MESSAGE"] for e in jf.entries()]
    finally:
        os.close(fd)
    assert got == [f"entry {i}" for i in (0, 1, *range(room, 20))]
    assert any("again, or out of order" in p for p in jf.problems)
