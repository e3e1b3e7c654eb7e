"""From a host path (raw bytes, possibly hostile) to a safe stored path, and back to words.

Host file names may hold any byte but ``/`` and NUL: invalid UTF-8, newlines, a leading
dash, ``..``. The stored copy gets a name that is safe on any file system and in
``SHA256SUMS``; the journal keeps the original losslessly. Encoding is percent-style and
injective (``%`` itself is escaped), so two sources never share a stored name.
"""

from __future__ import annotations

import base64
import hashlib
import re

_MAX_COMPONENT = 200  # bytes; leaves room under NAME_MAX (255) for suffixes


# Printable ASCII but % and \: the common case, kept as it is without a per-character loop.
_PLAIN = re.compile(rb"[\x20-\x24\x26-\x5b\x5d-\x7e]+")


def _encode_component(raw: bytes) -> str:
    if _PLAIN.fullmatch(raw) and raw not in (b".", b"..") and len(raw) <= _MAX_COMPONENT:
        return raw.decode("ascii")
    if raw in (b".", b".."):
        return "%2E" * len(raw)
    text = raw.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"%{code - 0xDC00:02X}")
        elif code < 0x20 or code == 0x7F or ch in "%\\":
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    name = "".join(out)
    if len(name.encode("utf-8")) > _MAX_COMPONENT:
        digest = hashlib.sha256(raw).hexdigest()[:16]
        name = name.encode("utf-8")[: _MAX_COMPONENT - 20].decode("utf-8", "ignore")
        name = f"{name}%~{digest}"
    return name


def stored_relpath(source: bytes) -> str:
    """``/var/log/a\\nb`` -> ``var/log/a%0Ab``: always relative, never with ``..``."""
    parts = [p for p in source.split(b"/") if p and p != b"."]
    return "/".join(_encode_component(p) for p in parts) or "%2F"


def describe(source: bytes) -> dict[str, str]:
    """A display string, plus base64 of the raw bytes when the display is not exact."""
    display = source.decode("utf-8", "backslashreplace")
    if display.encode("utf-8") == source and "\\" not in display:
        return {"path": display}
    return {"path": display, "path_b64": base64.b64encode(source).decode("ascii")}
