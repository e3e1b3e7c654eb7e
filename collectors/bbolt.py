"""Reading a bbolt (BoltDB) file without its library: containerd's ``meta.db`` and its
snapshotters' ``metadata.db``, Podman's older ``bolt_state.db``.

The format (go.etcd.io/bbolt, ``page.go``, ``bucket.go``, ``db.go``): fixed-size pages,
each starting with a 16-byte header (page ID u64, flags u16, element count u16, overflow
pages u32), little-endian. Pages 0 and 1 are meta pages (magic ``0xED0CDAED``, version
2, page size, the root bucket's page, transaction ID, and an FNV-1a 64 checksum of the
meta); the valid one with the higher transaction ID is the database as last committed.
A branch page's elements (pos u32, key size u32, child page u64) and a leaf page's
(flags u32, pos u32, key size u32, value size u32) are 16 bytes each, their keys and
values at ``pos`` from the element itself. A leaf element with flag 1 is a nested bucket:
its value is the bucket's root page (u64) and sequence (u64), and a root of 0 means an
inline bucket whose page follows in the value itself.

Safe on a damaged or hostile file: the file is read whole and bounded (never mapped: a
file cut short under the run would be ``SIGBUS``), every offset is checked against the
page and the file, a page reached twice in one walk (a loop) or deeper than
``MAX_DEPTH`` is refused, and each problem is a ``BoltError`` naming the page."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .readfile import read_whole

MAGIC = 0xED0CDAED
BRANCH, LEAF, META = 0x01, 0x02, 0x04
BUCKET_LEAF = 0x01
MAX_BYTES = 1024 * 1024 * 1024
MAX_DEPTH = 64  # of a B+tree: bbolt's are a handful of levels deep
_HEADER = struct.Struct("<QHHI")
_META = struct.Struct("<IIIIQQQQQQ")
_ELEMENT = struct.Struct("<IIII")  # leaf: flags, pos, ksize, vsize; branch: pos, ksize, pgid


class BoltError(Exception):
    """Not a bbolt file, or a page that does not parse; the message says which."""


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Bucket:
    """One bucket: its keys in order, each a value (bytes) or a nested ``Bucket``."""

    def __init__(self, db: BoltFile, root: int, inline: bytes | None, depth: int) -> None:
        self._db, self._root, self._inline, self._depth = db, root, inline, depth

    def items(self) -> Iterator[tuple[bytes, bytes | Bucket]]:
        if self._depth > MAX_DEPTH:
            raise BoltError("buckets nested deeper than allowed")
        if self._inline is not None:
            yield from self._db.leaf_items(self._inline, "inline bucket", self._depth)
        else:
            yield from self._db.tree_items(self._root, self._depth, set())

    def get(self, key: bytes) -> bytes | Bucket | None:
        for k, v in self.items():
            if k == key:
                return v
        return None

    def bucket(self, key: bytes) -> Bucket | None:
        got = self.get(key)
        return got if isinstance(got, Bucket) else None

    def value(self, key: bytes) -> bytes | None:
        got = self.get(key)
        return got if isinstance(got, bytes) else None


class BoltFile:
    def __init__(self, data: bytes) -> None:
        self.data = data
        sizes = [self._page_size_of_meta0(), 4096, 8192, 16384, 65536]
        metas = [m for m in {self._meta(i, size) for size in sizes if size for i in (0, 1)} if m]
        if not metas:
            raise BoltError("no valid meta page: not a bbolt file, or both metas damaged")
        self.page_size, self.root, self.txid = max(metas, key=lambda m: m[2])

    def _page_size_of_meta0(self) -> int | None:
        if len(self.data) < 16 + _META.size:
            return None
        magic, _, page_size = struct.unpack_from("<III", self.data, 16)
        return page_size if magic == MAGIC and 512 <= page_size <= 1 << 20 else None

    def _meta(self, index: int, size: int) -> tuple[int, int, int] | None:
        """(page size, root bucket page, txid) of meta page ``index`` of pages of
        ``size`` bytes, if it is valid and says that size."""
        at = index * size
        if at + 16 + _META.size > len(self.data):
            return None
        magic, version, page_size, _, root, _, _, _, txid, checksum = _META.unpack_from(
            self.data, at + 16
        )
        if magic != MAGIC or version != 2 or page_size != size:
            return None
        if _fnv64a(self.data[at + 16 : at + 16 + _META.size - 8]) != checksum:
            return None
        return page_size, root, txid

    def page(self, pgid: int) -> tuple[int, int, int, int]:
        """(offset, end, flags, element count) of page ``pgid`` with its overflow."""
        at = pgid * self.page_size
        if pgid < 2 or at + 16 > len(self.data):
            raise BoltError(f"page {pgid} is outside the file")
        _, flags, count, overflow = _HEADER.unpack_from(self.data, at)
        end = at + (overflow + 1) * self.page_size
        if end > len(self.data):
            raise BoltError(f"page {pgid} runs past the end of the file")
        return at, end, flags, count

    def tree_items(
        self, pgid: int, depth: int, seen: set[int], level: int = 0
    ) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """The leaf elements of the B+tree rooted at page ``pgid``, in key order."""
        if pgid in seen:
            raise BoltError(f"page {pgid} is reached twice: a loop")
        if level > MAX_DEPTH:
            raise BoltError(f"page {pgid}: a tree deeper than {MAX_DEPTH} levels")
        seen.add(pgid)
        at, end, flags, count = self.page(pgid)
        if flags & LEAF:
            yield from self.leaf_items(self.data[at:end], f"page {pgid}", depth)
        elif flags & BRANCH:
            if 16 + 16 * count > end - at:
                raise BoltError(f"page {pgid}: more elements than the page holds")
            for i in range(count):
                child = struct.unpack_from("<Q", self.data, at + 16 + 16 * i + 8)[0]
                yield from self.tree_items(child, depth, seen, level + 1)
        else:
            raise BoltError(f"page {pgid}: neither a branch nor a leaf (flags {flags:#x})")

    def leaf_items(
        self, page: bytes, where: str, depth: int
    ) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """The elements of one leaf page (``page``: its bytes, header first)."""
        if len(page) < 16:
            raise BoltError(f"{where}: shorter than a page header")
        _, flags, count, _ = _HEADER.unpack_from(page, 0)
        if count and not flags & LEAF:
            raise BoltError(f"{where}: not a leaf page (flags {flags:#x})")
        for i in range(count):
            e = 16 + 16 * i
            if e + 16 > len(page):
                raise BoltError(f"{where}: element {i} outside the page")
            eflags, pos, ksize, vsize = _ELEMENT.unpack_from(page, e)
            k0 = e + pos
            if k0 + ksize + vsize > len(page):
                raise BoltError(f"{where}: element {i} points outside the page")
            key, value = page[k0 : k0 + ksize], page[k0 + ksize : k0 + ksize + vsize]
            if eflags & BUCKET_LEAF:
                if len(value) < 16:
                    raise BoltError(f"{where}: bucket {key!r} has a short header")
                root = struct.unpack_from("<Q", value)[0]
                yield key, Bucket(self, root, value[16:] if root == 0 else None, depth + 1)
            else:
                yield key, value

    def root_bucket(self) -> Bucket:
        return Bucket(self, self.root, None, 0)


def open_bolt(path: bytes) -> BoltFile:
    """The bbolt file at ``path``, read whole (never through a symlink, never a FIFO)."""
    try:
        return BoltFile(read_whole(path, MAX_BYTES))
    except OSError as e:
        raise BoltError(f"cannot read: {e.strerror}") from e


def walk(
    bucket: Bucket, prefix: tuple[bytes, ...] = ()
) -> Iterator[tuple[tuple[bytes, ...], bytes | None]]:
    """Every key path under ``bucket``, depth first in key order: (path, value), a nested
    bucket's own path with None."""
    for key, value in bucket.items():
        if isinstance(value, Bucket):
            yield (*prefix, key), None
            yield from walk(value, (*prefix, key))
        else:
            yield (*prefix, key), value
