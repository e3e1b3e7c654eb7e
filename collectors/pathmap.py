"""From a host path (raw bytes, possibly hostile) to a safe stored path, and back to words.

Host file names may hold any byte but ``/`` and NUL: invalid UTF-8, newlines, a leading
dash, ``..``. The stored copy gets a name that is safe on any file system and in
``SHA256SUMS``; the journal keeps the original losslessly. Encoding is percent-style and
injective (``%`` itself is escaped), so two sources never share a stored name.

"Any file system" includes the responder's FAT32 or exFAT drive, and the same encoding is
used on every drive, so evidence looks the same wherever it was written: the characters
those refuse (``" * : < > ? \\ |`` and controls), a trailing dot or space, and the DOS
device names (``CON``, ``NUL.txt``, ``COM1``...) are escaped too, and a long name is
shortened to 200 bytes of UTF-8, within both ext4's 255 bytes and FAT's 255 UTF-16 units.
Every escape is ``%XX`` of the original byte, so percent-decoding a stored name
(``urllib.parse.unquote_to_bytes``) gives the host name back; only a shortened name
(``...%~<digest>``) needs the journal. Names that differ only in case are made distinct
when they are claimed (``StoredNames``)."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import threading
import unicodedata

from .hashset import HashSet64

_MAX_COMPONENT = 200  # bytes; leaves room under NAME_MAX (255) for suffixes

# Printable ASCII but % (the escape) and what FAT32/exFAT refuse in a name: " * : < > ? \ |.
# The common case, kept as it is without a per-character loop.
_PLAIN = re.compile(rb"[\x20\x21\x23\x24\x26-\x29\x2b-\x39\x3b\x3d\x40-\x5b\x5d-\x7b\x7d\x7e]+")
_ESCAPED = frozenset('%"*:<>?\\|')
# Windows opens these as devices, with any extension: "NUL.txt" is NUL.
_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³]) *(\..*)?", re.IGNORECASE)


def _escape_chars(raw: bytes) -> str:
    text = raw.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"%{code - 0xDC00:02X}")
        elif code < 0x20 or code == 0x7F or ch in _ESCAPED:
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    return "".join(out)


def _storable_everywhere(name: str) -> str:
    """Escape what FAT and exFAT drop or Windows misreads: a trailing dot or space (both
    are silently stripped), and a DOS device name (its first letter)."""
    if name[-1] in ". ":
        name = f"{name[:-1]}%{ord(name[-1]):02X}"
    if name[:3].upper() in ("CON", "PRN", "AUX", "NUL", "COM", "LPT") and _DEVICE.fullmatch(name):
        name = f"%{ord(name[0]):02X}{name[1:]}"
    return name


def _encode_component(raw: bytes) -> str:
    if raw in (b".", b".."):
        return "%2E" * len(raw)
    if _PLAIN.fullmatch(raw) and len(raw) <= _MAX_COMPONENT:
        name = _storable_everywhere(raw.decode("ascii"))
        if len(name) <= _MAX_COMPONENT:
            return name
        return _shorten(raw, name)
    name = _storable_everywhere(_escape_chars(raw))
    return _shorten(raw, name) if len(name.encode("utf-8")) > _MAX_COMPONENT else name


def _shorten(raw: bytes, name: str) -> str:
    digest = hashlib.sha256(raw).hexdigest()[:16]
    name = name.encode("utf-8")[: _MAX_COMPONENT - 20].decode("utf-8", "ignore")
    return f"{name}%~{digest}"


def stored_relpath(source: bytes) -> str:
    """``/var/log/a\\nb`` -> ``var/log/a%0Ab``: always relative, never with ``..``."""
    directory, _, name = source.rpartition(b"/")
    if name in (b"", b"."):
        return _stored_dir(source) or "%2F"
    stored_dir = _stored_dir(directory)
    return f"{stored_dir}/{_encode_component(name)}" if stored_dir else _encode_component(name)


@functools.lru_cache(maxsize=256)
def _stored_dir(directory: bytes) -> str:
    """A directory's part of ``stored_relpath``, ``""`` for the root: the files of a tree
    share it, and encoding it again for each of them was most of a small copy's path cost."""
    parts = [p for p in directory.split(b"/") if p and p != b"."]
    return "/".join(_encode_component(p) for p in parts)


def describe(source: bytes) -> dict[str, str]:
    """A display string, plus base64 of the raw bytes when the display is not exact."""
    display = source.decode("utf-8", "backslashreplace")
    if display.encode("utf-8") == source and "\\" not in display:
        return {"path": display}
    return {"path": display, "path_b64": base64.b64encode(source).decode("ascii")}


def _fold(name: str) -> str:
    """A name as a case-insensitive drive compares it (FAT, exFAT, NTFS, APFS): caseless,
    and for APFS's sake canonically decomposed."""
    if name.isascii():
        return name.lower()
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


class StoredNames:
    """The stored paths handed out in one evidence directory, each distinct even where
    case does not count: the second of ``Readme`` and ``README`` (a file or a directory)
    becomes ``README~2``, and so does the second claim of the same name. Files under a
    renamed directory follow it (``DIR~2/file``). Thread-safe.

    Every name stays claimed for the whole run, as a 64-bit hash of (stored directory,
    folded name): 16 bytes a file, so a million files cost 16 MB, not 100 (``hashset``)."""

    def __init__(self) -> None:
        self._names = HashSet64()  # (stored directory, folded name) of every claim
        self._dirs: dict[str, str] = {}  # directory as asked -> as stored
        self._lock = threading.Lock()

    def claim(self, rel: str) -> str:
        with self._lock:
            parent, _, name = rel.rpartition("/")
            stored = self._directory(parent)
            name = self._unique(stored, name)
            return f"{stored}/{name}" if stored else name

    def _unique(self, directory: str, name: str) -> str:
        candidate, n = name, 1
        while (directory, _fold(candidate)) in self._names:
            n += 1
            candidate = f"{name}~{n}"
        self._names.add((directory, _fold(candidate)))
        return candidate

    def _directory(self, path: str) -> str:
        """The stored name of directory ``path``, claimed on first use along with its
        parents (a loop, not recursion: trees are thousands of levels deep)."""
        if not path or path in self._dirs:
            return self._dirs.get(path, "")
        parts = path.split("/")
        depth = len(parts) - 1
        while depth and "/".join(parts[:depth]) not in self._dirs:
            depth -= 1
        asked = "/".join(parts[:depth])
        stored = self._dirs.get(asked, "")
        for part in parts[depth:]:
            asked = f"{asked}/{part}" if asked else part
            below = f"{stored}/" if stored else ""
            stored = below + self._unique(stored, part)
            stored = asked if stored == asked else stored  # one string kept, not two
            self._dirs[asked] = stored
        return stored
