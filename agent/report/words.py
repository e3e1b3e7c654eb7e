"""The report's words for people: evidence text made safe for each format, sizes,
addresses, stage names and counts said as a person would say them.

Everything a report shows that came from the evidence (process names, argv, file names,
log lines) is attacker-controlled. It passes through ``printable`` first, the one rule
the tool uses on the terminal and in ``verify`` (C0/C1 controls, bidi overrides and line
breaks become visible escapes), and then through the format's own escaping: HTML
entities in HTML, and in Markdown the characters that would open a tag, an entity, a
code span, a link or a table cell."""

from __future__ import annotations

import ipaddress
import re
from html import escape
from typing import Any

from collectors.textview import printable

from ..console import plural

__all__ = ["plural"]  # re-exported: the report's plural is the console's

# ASCII punctuation a Markdown renderer treats as syntax within a line; a backslash
# before any of them is an escape, so the backslash itself is doubled first.
_MD_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")
_MD = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "`": "\\`", "|": "\\|", "*": "\\*"}
_MD.update({"[": "\\[", "]": "\\]"})
_MD_RE = re.compile("[" + re.escape("".join(_MD)) + "]")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def shown(value: Any) -> str:
    """A value as a person reads it: no ``None``, no Python ``True``/``False``, every
    non-printable character escaped. Containers are not spelled out here."""
    if value is None or value == "":
        return "-"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return printable(value, named=True)


def md(value: Any) -> str:
    """Evidence text for Markdown: printable, then ``<``, ``>``, ``&``, backticks, pipes,
    brackets, ``*``, ``~~``, a ``_`` at a word's edge and a leading ``#`` escaped, so it
    stays text inside a list item or a table cell whatever it holds, and renders as it is
    (``__init__.py`` is not made bold)."""
    text = _MD_BACKSLASH.sub(r"\\\\", shown(value))
    text = _MD_RE.sub(lambda m: _MD[m.group(0)], text)
    # ``_`` between two letters or digits never makes emphasis (``some_file``); at a word's
    # edge (``__init__``) it would, and the name would print wrong: escaped there only.
    text = _MD_UNDERSCORE.sub(r"\\_", text).replace("~~", "\\~\\~")
    if text != "-" and text.startswith(("#", "+", "-", "=")):
        return "\\" + text
    return text


def html(value: Any) -> str:
    """Evidence text for HTML (and SVG): printable, then entity-escaped, quotes too."""
    return escape(shown(value), quote=True)


def size(n: Any) -> str:
    """``2,336,014`` bytes -> ``2.2 MB`` (powers of 1024, named as people say them)."""
    if not isinstance(n, int) or isinstance(n, bool):
        return "unknown size"
    if n < 1024:
        return f"{n} bytes" if n != 1 else "1 byte"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}"
    return f"{value:.1f} TB"  # pragma: no cover


# Address ranges people must not mistake for a real network (documentation examples)
# or for the internet (shared address space behind a carrier's NAT).
_DOCUMENTATION = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
]
_SHARED = ipaddress.ip_network("100.64.0.0/10")


def address_kind(addr: Any) -> str:
    """What kind of address ``addr`` is, in words: ``public``, ``private (RFC 1918)``,
    ``documentation range (RFC 5737)``, ... ; ``not an IP address`` otherwise."""
    try:
        ip = ipaddress.ip_address(str(addr).split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in n for n in _DOCUMENTATION if n.version == ip.version):
        rfc = "RFC 5737" if ip.version == 4 else "RFC 3849"
        return f"documentation range ({rfc}): an example address, not a real network"
    if ip.is_loopback:
        return "loopback (this host)"
    if ip.is_link_local:
        return "link-local (the local segment)"
    if ip.version == 4 and ip in _SHARED:
        return "shared address space (RFC 6598, carrier NAT)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private (RFC 1918)" if ip.version == 4 else "private (unique local, RFC 4193)"
    if ip.is_global:
        return "public"
    return "reserved"


def is_internal(kind: str) -> bool:
    """Whether an ``address_kind`` is one of this site's own networks."""
    return kind.startswith(("private", "loopback", "link-local", "shared"))


STAGES = {
    "volatile": "the volatile state (processes, connections)",
    "slow": "the files and logs",
    "watch": "the log watch",
    "image": "the disk image",
    "isolation": "isolation",
}
_SEAL = re.compile(r"after stage (\w+)")


def seal_reason(reason: Any) -> str:
    """``after stage slow`` -> ``after the files and logs``; other reasons as they are."""
    text = shown(reason)
    m = _SEAL.fullmatch(text)
    if m:
        return f"after {STAGES.get(m.group(1), m.group(1))}"
    return {"start": "at the start", "end": "at the end"}.get(text, text)


def counts(c: Any) -> str:
    """The end record's counts in words: ``39 files stored (2.3 MB), 26 skipped, 0 failed``."""
    if not isinstance(c, dict):
        return "not recorded"
    parts = [f"{plural(int(c.get('stored') or 0), 'item')} stored"]
    if isinstance(c.get("bytes"), int):
        parts[0] += f" ({size(c['bytes'])})"
    parts += [f"{int(c.get(k) or 0):,} {k}" for k in ("skipped", "failed") if k in c]
    return ", ".join(parts)


def argv(value: Any, limit: int = 1024) -> str:
    """A command line as a shell shows it (words joined by spaces), not a Python list."""
    if isinstance(value, list):
        text = " ".join(str(a) for a in value[:64])
    else:
        text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + "..."
