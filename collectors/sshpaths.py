"""Where sshd looks beyond the usual places: its ``Include`` files and the
``AuthorizedKeysFile`` it is told to read, which an intruder can point anywhere
(``AuthorizedKeysFile /var/tmp/.k``) so that no ``~/.ssh/authorized_keys`` ever shows
the key. Read from ``sshd_config`` as sshd reads it: ``Include`` globs relative to
``/etc/ssh``, nested up to sshd's own limit, tokens ``%h``, ``%u``, ``%U``, ``%%``."""

from __future__ import annotations

import glob
import os

from .homes import read_passwd
from .readfile import read_regular

CONFIG = b"etc/ssh/sshd_config"
MAX_CONFIG = 1024 * 1024
MAX_DEPTH = 16  # sshd's READCONF_MAX_DEPTH
USUAL = (b".ssh/authorized_keys", b".ssh/authorized_keys2")


def _lines(root: bytes, path: bytes, depth: int, seen: set[bytes]) -> list[tuple[bytes, str]]:
    """(file, line) of ``path`` and every file it includes, in order."""
    if depth > MAX_DEPTH or path in seen:
        return []
    seen.add(path)
    try:
        text = read_regular(path, MAX_CONFIG, follow=False).decode("utf-8", "replace")
    except OSError:
        return []
    out: list[tuple[bytes, str]] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        out.append((path, line.strip()))
        if words[0].lower() == "include":
            for pattern in words[1:]:
                full = pattern if pattern.startswith("/") else "/etc/ssh/" + pattern
                matches = glob.glob(os.fsdecode(os.path.join(root, os.fsencode(full).lstrip(b"/"))))
                for match in sorted(matches):
                    out += _lines(root, os.fsencode(match), depth + 1, seen)
    return out


def included_files(root: bytes) -> list[bytes]:
    """Every file ``sshd_config`` includes (host paths under ``root``), itself excluded."""
    main = os.path.join(root, CONFIG)
    return [p for p in dict.fromkeys(f for f, _ in _lines(root, main, 0, set())) if p != main]


def authorized_keys_files(root: bytes) -> list[tuple[bytes, str]]:
    """(host path, user) of each ``AuthorizedKeysFile`` that exists and is not one of the
    two usual names in the user's home (those are collected anyway)."""
    tokens: list[str] = []
    for _, line in _lines(root, os.path.join(root, CONFIG), 0, set()):
        words = line.split()
        if words[0].lower() == "authorizedkeysfile" and not tokens:  # the first one wins
            tokens = [w for w in words[1:] if w.lower() != "none"]
    found: dict[bytes, str] = {}
    for account in read_passwd(root):
        home = account.home.rstrip(b"/")
        for token in tokens:
            text = (
                token.replace("%%", "\0").replace("%h", os.fsdecode(home))
                .replace("%u", account.name).replace("%U", str(account.uid)).replace("\0", "%")
            )  # fmt: skip
            raw = os.fsencode(text)
            if not raw.startswith(b"/"):
                raw = home + b"/" + raw
            if any(raw == home + b"/" + usual for usual in USUAL):
                continue
            host = os.path.join(root, raw.lstrip(b"/"))
            if os.path.lexists(host):
                found.setdefault(host, account.name)
    return list(found.items())
