"""Accounts and their home directories, read from ``/etc/passwd`` directly.

Not through ``pwd``/NSS: on a compromised host an NSS module (LDAP, sssd, a planted
``libnss_*``) is code of the host's that may answer anything, and a test's private mount
namespace must be able to present its own ``/etc/passwd``. One reader for every collector
that walks users' homes (system, executables, persistence, accounts), so they agree on
whose homes there are. Homes left under ``/home`` by an account that was since deleted
are included too: they are evidence as well."""

from __future__ import annotations

import os
from typing import NamedTuple

from .readfile import read_regular

PASSWD = b"etc/passwd"
MAX_PASSWD = 16 * 1024 * 1024


class Account(NamedTuple):
    """One line of ``/etc/passwd`` (``homes.read_passwd``)."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: bytes
    shell: str
    line_no: int


def read_passwd(root: bytes = b"/") -> list[Account]:
    """Every well-formed line of ``root``'s ``/etc/passwd``; an unreadable file is an
    empty list (the caller records why, if it cares). Lines NSS would skip (``+``/``-``
    compat entries, bad numbers) are skipped here too."""
    try:
        data = read_regular(os.path.join(root, PASSWD), MAX_PASSWD, follow=False)
    except OSError:
        return []
    accounts = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        parts = raw.split(b":")
        if len(parts) != 7 or not parts[0] or parts[0][:1] in (b"+", b"-", b"#"):
            continue
        try:
            uid, gid = int(parts[2]), int(parts[3])
        except ValueError:
            continue
        text = [p.decode("utf-8", "surrogateescape") for p in parts]
        accounts.append(Account(text[0], uid, gid, text[4], parts[5], text[6], n))
    return accounts


def user_homes(root: bytes = b"/") -> list[tuple[bytes, str]]:
    """(home directory under ``root``, account name) for every account with a real home,
    then every directory under ``/home`` no account names (``""``), each once."""
    found: dict[bytes, str] = {}
    for account in read_passwd(root):
        home = account.home.rstrip(b"/")
        if (
            home.startswith(b"/")
            and home not in (b"", b"/nonexistent")
            and not home.startswith((b"/proc", b"/sys", b"/dev"))
        ):
            found.setdefault(os.path.join(root, home.lstrip(b"/")), account.name)
    found.setdefault(os.path.join(root, b"root"), "root")
    top = os.path.join(root, b"home")
    try:
        names = sorted(os.listdir(top))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(top, name)
        if os.path.isdir(path) and not os.path.islink(path):
            found.setdefault(path, "")
    return [(home, user) for home, user in found.items() if os.path.isdir(home)]


def steered(home: bytes, path: bytes) -> bytes | None:
    """A user owns their home: if a directory between ``home`` and ``path`` is a symlink
    (``.ssh`` -> ``/etc``), the copy must not follow it. Returns where it leads, or None
    when every directory on the way is a real one."""
    parent = os.path.dirname(path)
    real_home = os.path.realpath(home)
    if os.path.realpath(parent) != real_home + parent[len(home) :]:
        return os.path.realpath(path)
    return None
