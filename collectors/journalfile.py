"""A reader for the systemd journal file format (systemd.io/JOURNAL_FILE_FORMAT), written
from that document: the header, the object headers, the entry array chain, entry objects
and the data objects they point to, in regular and compact mode (the ``COMPACT``
incompatible flag of systemd 252 and later: 32-bit offsets, no per-item hash).

Why our own: the host's ``journalctl`` is a host binary (it may be trojaned, or absent on
the examiner's machine), and ``libsystemd`` through ctypes would tie the kit to the
host's library. The file is read with ``pread`` through a small page cache, never
mapped, so a file truncated under us gives short reads, not a ``SIGBUS``.

Entries are found the way ``journalctl --file`` finds them: through the entry array
chain that starts in the header, at most ``n_entries`` of them, in order. Everything is
bounded by the file's size and checked before use; the first object that is not what it
should be (a file cut short, a torn tail of a file that was being written, garbage)
ends the walk cleanly and is described in ``JournalFile.problems``. Entry objects written
after the last linked one (a file copied while journald was appending: state ``ONLINE``)
are counted in ``unlinked``, not exported, as journalctl does not show them either."""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .journalcodec import (
    MAX_FIELD,
    NAMES,
    CodecError,
    DecodeBudget,
    add_field,
    decompress,
    json_value,
)

SIGNATURE = b"LPKSHHRH"
STATES = {0: "OFFLINE", 1: "ONLINE", 2: "ARCHIVED"}
INCOMPAT = {1: "COMPRESSED-XZ", 2: "COMPRESSED-LZ4", 4: "KEYED-HASH", 8: "COMPRESSED-ZSTD",
            16: "COMPACT"}  # fmt: skip
COMPACT = 16
DATA, FIELD, ENTRY, DATA_HASH, FIELD_HASH, ENTRY_ARRAY, TAG = range(1, 8)
_HEADER = struct.Struct("<8sIIB7x16s16s16s16sQQQQQQQQQQQQQQQ")  # through tail_entry_monotonic
_OBJECT = struct.Struct("<BB6xQ")
_ENTRY = struct.Struct("<QQQ16sQ")  # seqnum, realtime, monotonic, boot_id, xor_hash
_MIN_SIZE = {DATA: 64, FIELD: 40, ENTRY: 64, DATA_HASH: 16, FIELD_HASH: 16, ENTRY_ARRAY: 24,
             TAG: 64}  # fmt: skip
PAGE = 256 * 1024
PAGES = 64  # 16 MiB of cache
DATA_CACHE = 8192  # decoded data objects kept: most entries share _HOSTNAME, _BOOT_ID, ...
CACHED_VALUE = 1024  # ... short ones: 8192 decoded 64 MiB bombs would not fit in memory
MAX_ENTRY = 2 * MAX_FIELD  # decoded bytes of one entry: one field at its cap, and the rest
MAX_PROBLEMS = 20
# The field a data object that could not be decoded becomes (its own name is inside it).
NOT_DECODED = "__PRESERVE_NOT_DECODED"


class JournalFormatError(ValueError):
    """Not a journal file (bad signature, header too short): nothing can be read."""


@dataclass
class Header:
    compatible: int
    incompatible: int
    state: str
    file_id: bytes
    machine_id: bytes
    boot_id: bytes
    seqnum_id: bytes
    header_size: int
    arena_size: int
    tail_object_offset: int
    n_objects: int
    n_entries: int
    entry_array_offset: int
    head_realtime: int
    tail_realtime: int

    @property
    def compact(self) -> bool:
        return bool(self.incompatible & COMPACT)

    def describe(self) -> dict[str, Any]:
        flags = [n for bit, n in INCOMPAT.items() if self.incompatible & bit]
        unknown = self.incompatible & ~sum(INCOMPAT)
        return {
            "state": self.state, "incompatible_flags": flags + ([f"{unknown:#x}"] * bool(unknown)),
            "compatible_flags": self.compatible, "file_id": self.file_id.hex(),
            "machine_id": self.machine_id.hex(), "seqnum_id": self.seqnum_id.hex(),
            "header_size": self.header_size, "arena_size": self.arena_size,
            "n_objects": self.n_objects, "n_entries": self.n_entries,
            "head_realtime": self.head_realtime, "tail_realtime": self.tail_realtime,
        }  # fmt: skip


class PageReader:
    """``pread`` through a bounded page cache: objects are small and near each other."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self._pages: OrderedDict[int, bytes] = OrderedDict()

    def _page(self, n: int) -> bytes:
        page = self._pages.get(n)
        if page is None:
            page = os.pread(self.fd, PAGE, n * PAGE)
            self._pages[n] = page
            if len(self._pages) > PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(n)
        return page

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, or fewer where the file ends."""
        first, start = divmod(offset, PAGE)
        if start + length <= PAGE:  # most objects: within one page
            return self._page(first)[start : start + length]
        if length > 4 * PAGE:
            return os.pread(self.fd, length, offset)
        last = (offset + length - 1) // PAGE
        data = b"".join(self._page(n) for n in range(first, last + 1))
        return data[start : start + length]


@dataclass
class JournalFile:
    """One journal file, open for reading. ``entries()`` yields journalctl-style dicts."""

    reader: PageReader
    header: Header
    budget: DecodeBudget = field(default_factory=DecodeBudget)
    problems: list[str] = field(default_factory=list)
    unlinked: int = 0
    fields_not_decoded: int = 0
    _data: OrderedDict[int, tuple[str, str | list[int]] | None] = field(default_factory=OrderedDict)
    _end_of_entries: int = 0

    @classmethod
    def open(cls, fd: int, budget: DecodeBudget | None = None) -> JournalFile:
        size = os.fstat(fd).st_size
        reader = PageReader(fd, size)
        raw = reader.read(0, _HEADER.size)
        if len(raw) < _HEADER.size or raw[:8] != SIGNATURE:
            raise JournalFormatError("not a journal file (no LPKSHHRH signature)")
        v = _HEADER.unpack(raw)
        header = Header(
            compatible=v[1], incompatible=v[2], state=STATES.get(v[3], f"unknown ({v[3]})"),
            file_id=v[4], machine_id=v[5], boot_id=v[6], seqnum_id=v[7], header_size=v[8],
            arena_size=v[9], tail_object_offset=v[14], n_objects=v[15], n_entries=v[16],
            entry_array_offset=v[19], head_realtime=v[20], tail_realtime=v[21],
        )  # fmt: skip
        if header.header_size < 208 or header.header_size > size:
            raise JournalFormatError(f"header size {header.header_size} is not plausible")
        jf = cls(reader, header, budget or DecodeBudget())
        if header.header_size + header.arena_size > size:
            jf.problem(
                f"file is {size} bytes but its header describes "
                f"{header.header_size + header.arena_size}: cut short (or still growing)"
            )
        return jf

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def _object(self, offset: int, want: int) -> tuple[int, bytes] | None:
        """(flags, whole object) of the object of type ``want`` at ``offset``, or None
        (and a problem recorded) when it is not one, or does not fit in the file."""
        if offset % 8 or offset < self.header.header_size or offset + 16 > self.reader.size:
            self.problem(f"offset {offset}: outside the file or misaligned (expected {want})")
            return None
        kind, flags, size = _OBJECT.unpack(self.reader.read(offset, 16))
        if kind != want or size < _MIN_SIZE[want]:
            self.problem(f"offset {offset}: object type {kind} size {size}, expected type {want}")
            return None
        if offset + size > self.reader.size:
            self.problem(f"offset {offset}: object of {size} bytes runs past the end of the file")
            return None
        return flags, self.reader.read(offset, size)

    def entry_offsets(self) -> Iterator[int]:
        """The entry objects' offsets, in the order of the entry array chain."""
        compact = self.header.compact
        item = struct.Struct("<I" if compact else "<Q")
        left = self.header.n_entries
        offset, previous = self.header.entry_array_offset, 0
        last = 0  # journald appends: each entry lies after the one before it
        while offset and left > 0:
            if offset <= previous:
                self.problem(f"entry array chain loops back to offset {offset}")
                return
            got = self._object(offset, ENTRY_ARRAY)
            if got is None:
                return
            body = got[1]
            (next_offset,) = struct.unpack_from("<Q", body, 16)
            for (entry,) in item.iter_unpack(
                body[24 : 24 + (len(body) - 24) // item.size * item.size]
            ):
                if entry == 0 or left == 0:
                    break
                left -= 1
                if entry <= last:  # one entry named a million times: a million decodes
                    self.problem(f"entry array names offset {entry} again, or out of order")
                    continue
                last = entry
                yield entry
            previous, offset = offset, next_offset
        if left > 0:
            self.problem(f"entry array chain ends {left} entries short of the header's count")

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every linked entry, as ``journalctl -o json --all`` prints it (plus the
        ``__SEQNUM``/``__SEQNUM_ID`` of newer journalctl); stops at the first bad one."""
        seqnum_id = self.header.seqnum_id.hex()
        for offset in self.entry_offsets():
            entry = self._entry(offset, seqnum_id)
            if entry is None:
                return
            self._end_of_entries = max(self._end_of_entries, offset)
            yield entry
        self._count_unlinked()

    def _entry(self, offset: int, seqnum_id: str) -> dict[str, Any] | None:
        got = self._object(offset, ENTRY)
        if got is None:
            return None
        body = got[1]
        seqnum, realtime, monotonic, boot_id, xor_hash = _ENTRY.unpack_from(body, 16)
        boot = boot_id.hex()
        out: dict[str, Any] = {
            "__CURSOR": f"s={seqnum_id};i={seqnum:x};b={boot};m={monotonic:x};t={realtime:x};"
            f"x={xor_hash:x}",
            "__REALTIME_TIMESTAMP": str(realtime),
            "__MONOTONIC_TIMESTAMP": str(monotonic),
            "_BOOT_ID": boot,
            "__SEQNUM": str(seqnum),
            "__SEQNUM_ID": seqnum_id,
        }
        items = body[64:]
        if self.header.compact:
            offsets = [o for (o,) in struct.iter_unpack("<I", items[: len(items) // 4 * 4])]
        else:
            offsets = [o for o, _ in struct.iter_unpack("<QQ", items[: len(items) // 16 * 16])]
        spent = dropped = 0
        for data_offset in offsets:
            if spent > MAX_ENTRY:  # an entry may name one huge object a thousand times
                dropped += 1
                continue
            decoded = self._field(data_offset)
            if decoded is None:
                continue
            name, value = decoded
            spent += len(value)
            if spent > MAX_ENTRY:
                dropped += 1
            elif name != "_BOOT_ID":  # journalctl prints the entry's own boot ID instead
                add_field(out, name, value)
        if dropped:
            self.fields_not_decoded += dropped
            why = f"{dropped} fields not exported: the entry decodes to more than {MAX_ENTRY} bytes"
            self.problem(f"entry at {offset}: {why}")
            add_field(out, NOT_DECODED, why)
        return out

    def _field(self, offset: int) -> tuple[str, str | list[int]] | None:
        if offset in self._data:
            self._data.move_to_end(offset)
            return self._data[offset]
        decoded = self._decode(offset)
        if decoded is None or len(decoded[1]) <= CACHED_VALUE:
            self._data[offset] = decoded
            if len(self._data) > DATA_CACHE:
                self._data.popitem(last=False)
        return decoded

    def _decode(self, offset: int) -> tuple[str, str | list[int]] | None:
        got = self._object(offset, DATA)
        if got is None:
            return None
        flags, body = got
        payload = body[72 if self.header.compact else 64 :]
        try:
            raw = decompress(flags, payload, self.budget)
        except CodecError as e:
            self.fields_not_decoded += 1
            self.problem(f"data object at {offset} ({NAMES.get(flags & 7, flags)}): {e}")
            return NOT_DECODED, f"data object at offset {offset}: {e}"
        name, eq, value = raw.partition(b"=")
        if not eq:
            return None
        return name.decode("utf-8", "replace"), json_value(value)

    def _count_unlinked(self) -> None:
        """Entry objects after the last linked one, up to the header's tail object."""
        offset = self._end_of_entries
        if not offset:
            return
        end = min(self.header.tail_object_offset, self.reader.size - 16)
        first = self._object(offset, ENTRY)
        if first is None:
            return
        offset += (_OBJECT.unpack(first[1][:16])[2] + 7) & ~7
        while offset <= end:
            kind, _, size = _OBJECT.unpack(self.reader.read(offset, 16))
            if size < 16 or kind not in _MIN_SIZE:
                break
            self.unlinked += kind == ENTRY
            offset += (size + 7) & ~7
