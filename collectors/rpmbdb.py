"""Reading an RPM ``Packages`` file in Berkeley DB hash format (RHEL/CentOS 7 and 8,
Amazon Linux 2, older SUSE): the old servers that are compromised most. No Berkeley DB
library is needed; only the pages are read.

Layout (Berkeley DB's ``db_page.h``; little- or big-endian as the metadata page's magic
says): page 0 is the hash metadata page (magic ``0x061561`` at byte 12, page size at 20,
flags at 26); every other page starts with a 26-byte header (``pgno`` at 8, ``next_pgno``
at 16, ``entries`` at 20, ``hf_offset`` at 22, ``type`` at 25) followed by ``entries``
two-byte item offsets. Hash pages (types 2 and 13) hold key and data items in pairs; an
item is ``H_KEYDATA`` (type byte 1, the bytes up to the previous item) or ``H_OFFPAGE``
(type byte 3; its first overflow page at +4 and total length at +8). Overflow pages
(type 7) carry ``hf_offset`` bytes after their header and chain by ``next_pgno``. The key
of each RPM record is the package's instance number, the data its header blob.

Only what the header parser accepts is used; a page that does not parse is skipped and
counted, so a damaged or hostile file yields fewer packages, never a wrong one."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

HASH_MAGIC = 0x061561
PAGE_HEADER = 26
P_HASH_UNSORTED, P_OVERFLOW, P_HASH = 2, 7, 13
H_KEYDATA, H_OFFPAGE = 1, 3
DBMETA_CHKSUM = 0x01
MAX_FILE = 4 * 1024**3  # an rpmdb of a few thousand packages is tens of MB
MAX_ITEM = 64 * 1024**2  # one header blob; a real one is at most a few MB


class BdbError(ValueError):
    """The file is not a Berkeley DB hash database this reader understands."""


class HashFile:
    """Pages of one Berkeley DB hash file, read with ``pread`` from a descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        if self.size > MAX_FILE:
            raise BdbError(f"larger than {MAX_FILE} bytes: not an RPM database")
        meta = os.pread(fd, 512, 0)
        if len(meta) < 64:
            raise BdbError("shorter than a Berkeley DB metadata page")
        for order in ("<", ">"):
            if struct.unpack_from(f"{order}I", meta, 12)[0] == HASH_MAGIC:
                self.order = order
                break
        else:
            raise BdbError("no Berkeley DB hash magic number")
        self.page_size = struct.unpack_from(f"{self.order}I", meta, 20)[0]
        if self.page_size not in {512 << n for n in range(8)}:
            raise BdbError(f"page size {self.page_size} is not one Berkeley DB uses")
        if meta[26] & DBMETA_CHKSUM:
            raise BdbError("pages carry checksums, a layout this reader does not parse yet")
        self.pages = self.size // self.page_size
        self.skipped = 0  # pages or items that did not parse
        # Overflow pages already read: each belongs to one item, so one chain named by
        # every item of a page (thousands of times its size) is read once, then refused.
        self._overflow_pages: set[int] = set()

    def page(self, pgno: int) -> bytes:
        if not 0 < pgno < self.pages:
            raise BdbError(f"page {pgno} is outside the file")
        return os.pread(self.fd, self.page_size, pgno * self.page_size)

    def header(self, page: bytes) -> tuple[int, int, int, int]:
        """(next_pgno, entries, hf_offset, type) of one page."""
        next_pgno, entries, hf_offset = struct.unpack_from(f"{self.order}IHH", page, 16)
        return next_pgno, entries, hf_offset, page[25]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, data) pair on the hash pages, in page order."""
        for pgno in range(1, self.pages):
            page = self.page(pgno)
            _, entries, _, kind = self.header(page)
            if kind not in (P_HASH, P_HASH_UNSORTED):
                continue
            try:
                values = self._page_items(page, entries)
            except (BdbError, struct.error):
                self.skipped += 1
                continue
            for i in range(0, len(values) - 1, 2):
                yield values[i], values[i + 1]

    def _page_items(self, page: bytes, entries: int) -> list[bytes]:
        if PAGE_HEADER + 2 * entries > len(page):
            raise BdbError("more items than the page can index")
        offsets = struct.unpack_from(f"{self.order}{entries}H", page, PAGE_HEADER)
        values: list[bytes] = []
        for i, offset in enumerate(offsets):
            end = self.page_size if i == 0 else offsets[i - 1]
            if not PAGE_HEADER + 2 * entries <= offset < end <= self.page_size:
                raise BdbError("an item lies outside its page")
            kind = page[offset]
            if kind == H_KEYDATA:
                values.append(page[offset + 1 : end])
            elif kind == H_OFFPAGE:
                first, total = struct.unpack_from(f"{self.order}II", page, offset + 4)
                values.append(self._overflow(first, total))
            else:
                raise BdbError(f"item type {kind} is not one RPM databases use")
        return values

    def _overflow(self, pgno: int, total: int) -> bytes:
        if total > MAX_ITEM:
            raise BdbError(f"an item of {total} bytes is not an RPM header")
        parts: list[bytes] = []
        got = 0
        while got < total:
            if pgno in self._overflow_pages:
                raise BdbError("an overflow chain loops, or is shared with another item")
            self._overflow_pages.add(pgno)
            page = self.page(pgno)
            next_pgno, _, length, kind = self.header(page)
            if kind != P_OVERFLOW or PAGE_HEADER + length > self.page_size:
                raise BdbError("an overflow chain leads to a page that is not one")
            parts.append(page[PAGE_HEADER : PAGE_HEADER + length])
            got += length
            pgno = next_pgno
        data = b"".join(parts)
        if len(data) != total:
            raise BdbError("an overflow chain is longer than its item")
        return data
