"""Hostile RPM databases. A Berkeley DB ``Packages`` file: one hash page whose 4,600
items all name the same 1 MiB overflow chain. Each item alone is within the reader's cap
per item, but together they are 4.6 GiB of one page's values, from a 1.2 MB file. In a
valid file an overflow page belongs to one item only; the reader (in a child under an
address-space limit of 1 GiB) must refuse the second use and still read the file's other
page. And an ``rpmdb.sqlite`` whose ``Packages`` is an endless view."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PAGE = 64 * 1024
CHAIN = 16  # overflow pages: 1 MiB
_CHILD = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from collectors.rpmbdb import HashFile
fd = os.open(sys.argv[1], os.O_RDONLY)
pages = HashFile(fd)
pairs = [(k.hex(), len(v)) for k, v in pages.items()]
print(json.dumps({"pairs": pairs, "skipped": pages.skipped}))
"""


def _page(kind: int, next_pgno: int = 0, entries: int = 0, hf_offset: int = 0) -> bytearray:
    page = bytearray(PAGE)
    struct.pack_into("<IHH", page, 16, next_pgno, entries, hf_offset)
    page[25] = kind
    return page


def _hash_page(items: list[bytes]) -> bytearray:
    """A hash page (type 13) holding ``items`` packed from its end, as Berkeley DB does."""
    page = _page(13, entries=len(items))
    end = PAGE
    for i, item in enumerate(items):
        end -= len(item)
        page[end : end + len(item)] = item
        struct.pack_into("<H", page, 26 + 2 * i, end)
    return page


def hostile_packages(path: Path) -> None:
    meta = bytearray(PAGE)
    struct.pack_into("<I", meta, 12, 0x061561)
    struct.pack_into("<I", meta, 20, PAGE)
    body = PAGE - 26
    total = CHAIN * body
    offpage = struct.pack("<B3xII", 3, 3, total)  # H_OFFPAGE: first page 3, length
    fan = (PAGE - 26) // (2 + len(offpage)) // 2 * 2
    pages = [meta, _hash_page([offpage] * fan)]
    pages.append(_hash_page([b"\x01" + struct.pack("<I", 7), b"\x01" + b"blob" * 4]))
    for n in range(CHAIN):
        next_pgno = 3 + n + 1 if n + 1 < CHAIN else 0
        page = _page(7, next_pgno, hf_offset=body)
        pages.append(page)
    path.write_bytes(b"".join(pages))


def test_an_overflow_chain_named_by_every_item_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Packages"
    hostile_packages(path)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], cwd=ROOT, capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    got = json.loads(result.stdout)
    assert got["pairs"] == [[struct.pack("<I", 7).hex(), 16]]  # the other page, whole
    assert got["skipped"] == 1


def test_an_rpmdb_whose_packages_is_an_endless_view_is_refused(tmp_path: Path) -> None:
    """``rpmdb.sqlite`` is SQL the host wrote: ``Packages`` may be a view over a recursive
    query with no end, which ``SELECT ... ORDER BY hnum`` would sort for ever (spilling to
    temporary files). Only a table is read; the reader (in a child) must end, and say why."""
    db = tmp_path / "root/var/lib/rpm/rpmdb.sqlite"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
            "SELECT x + 1 FROM c) SELECT x AS hnum, zeroblob(1000) AS blob FROM c"
        )
    code = (
        "import sys; from collectors import rpmdb; "
        "db = rpmdb.load(sys.argv[1].encode()); print(db.packages, db.notes)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "root")],
        cwd=ROOT, capture_output=True, timeout=60,
        env={**os.environ, "SQLITE_TMPDIR": str(tmp_path)},  # a sort's spill stays here
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.startswith(b"0 ") and b"not a table" in result.stdout, result.stdout
