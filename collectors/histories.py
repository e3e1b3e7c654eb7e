"""Shell and tool histories: where each program keeps one, where a start-up file moved it
(``HISTFILE=``), and their lines with the time each was typed where the format keeps it.

Formats: bash (``#1700000000`` lines before a command, with ``HISTTIMEFORMAT``), zsh
extended history (``: 1700000000:0;command``), fish (``- cmd: ...`` then ``when: ...``);
every other file is one command a line. A line is at most ``MAX_LINE`` characters to the
rules (the copy keeps it whole)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

from .persistkinds import HOME_STARTUP, histfiles
from .readfile import read_regular

# (file in a home, the program that writes it, judged line by line?)
HISTORY_FILES = (
    (b".bash_history", "bash", True), (b".zsh_history", "zsh", True),
    (b".zhistory", "zsh", True), (b".histfile", "zsh", True), (b".sh_history", "sh", True),
    (b".ash_history", "ash", True), (b".mksh_history", "mksh", True),
    (b".history", "csh", True), (b".local/share/fish/fish_history", "fish", True),
    (b".python_history", "python", True), (b".mysql_history", "mysql", True),
    (b".psql_history", "psql", True), (b".sqlite_history", "sqlite", True),
    (b".rediscli_history", "redis-cli", True), (b".node_repl_history", "node", True),
    (b".lesshst", "less", False), (b".viminfo", "vim", False), (b".wget-hsts", "wget", False),
)  # fmt: skip
SYSTEM_STARTUP = (
    b"etc/profile", b"etc/bash.bashrc", b"etc/bashrc", b"etc/zsh/zshrc", b"etc/zsh/zshenv",
    b"etc/zsh/zprofile", b"etc/zshrc", b"etc/environment",
)  # fmt: skip
MAX_STARTUP = 1024 * 1024
MAX_LINE = 4096
_ZSH = re.compile(r"^: (\d+):\d+;(.*)$")
_BASH_TIME = re.compile(r"^#(\d{9,11})$")


def _startup_texts(root: bytes, home: bytes | None) -> Iterator[tuple[bytes, str]]:
    if home is None:
        names = [os.path.join(root, p) for p in SYSTEM_STARTUP]
        profile_d = os.path.join(root, b"etc/profile.d")
        with contextlib.suppress(OSError):
            names += [os.path.join(profile_d, n) for n in sorted(os.listdir(profile_d))]
    else:
        names = [os.path.join(home, rel) for rel in HOME_STARTUP]
    for path in names:
        try:
            data = read_regular(path, MAX_STARTUP, follow=False)
        except OSError:
            continue
        yield path, data.decode("utf-8", "surrogateescape")


def custom_histfiles(root: bytes, home: bytes, host_home: bytes) -> list[tuple[bytes, bytes]]:
    """(history file under ``root``, the start-up file that named it) for each
    ``HISTFILE=`` in the system-wide or this home's start-up files that can be resolved
    (``~``, ``$HOME``, ``${HOME}``, relative to the home); ``/dev/null`` is not a file
    (the ``history-disabled`` rule reports it)."""
    found: dict[bytes, bytes] = {}
    for source, text in [*_startup_texts(root, None), *_startup_texts(root, home)]:
        for value in histfiles(text):
            raw = os.fsencode(value)
            for token in (b"${HOME}", b"$HOME", b"~"):
                if raw.startswith(token):
                    raw = host_home + raw[len(token) :]
            if b"$" in raw or raw.startswith(b"/dev/"):
                continue
            if not raw.startswith(b"/"):
                raw = host_home + b"/" + raw
            found.setdefault(os.path.join(root, raw.lstrip(b"/")), source)
    return list(found.items())


def history_lines(text: str, shell: str) -> Iterator[tuple[int, str, int | None]]:
    """(line number, command, time typed in ns or None) of each command. Lines end at
    ``\n`` only, as the shell writes them: ``splitlines`` would also cut at ``\x0b``, NEL
    or U+2028, and ``curl URL <VT>| sh`` would be two harmless-looking lines."""
    when: int | None = None
    for n, line in enumerate(text.split("\n"), 1):
        if shell == "bash" and (m := _BASH_TIME.match(line)):
            when = int(m.group(1)) * 10**9
            continue
        if shell == "zsh" and (m := _ZSH.match(line)):
            yield n, m.group(2)[:MAX_LINE], int(m.group(1)) * 10**9
            continue
        if shell == "fish":
            stripped = line.strip()
            if stripped.startswith("- cmd: "):
                yield n, stripped[7:][:MAX_LINE], None
            continue
        if line.strip():
            yield n, line[:MAX_LINE], when
        when = None
