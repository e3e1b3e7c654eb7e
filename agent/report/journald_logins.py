"""Logins, SSH and sudo from the parsed journal (``artifacts/journald/*.jsonl``, written
by collectors/journald.py as ``journalctl -o json`` prints entries), for hosts that keep
them only in the journal (Debian 12 without rsyslog has no ``auth.log``).

The same sshd ``Accepted``/``Failed`` lines the auth log parser reads (logins.auth_row),
and sudo's ``USER : TTY=... ; PWD=... ; USER=root ; COMMAND=...`` lines, taken from the
entries sshd (``sshd-session`` since OpenSSH 9.8) or sudo sent. Who sent an entry is
journald's own ``_COMM``, which a sender cannot set: ``SYSLOG_IDENTIFIER`` is whatever
the sender says (``logger -t sshd``, open to every local user), so it is used only for an
entry without ``_COMM`` (one imported from elsewhere). The time is the entry's own
``__REALTIME_TIMESTAMP``, so no year or zone has to be guessed. Bounded like
the auth logs: lines of at most ``MAX_LINE`` bytes, at most ``MAX_AUTH_BYTES`` a file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from . import logins as parse
from .evidence import Evidence, lines

_SUDO = re.compile(
    r"^\s*(?P<user>\S+) : (?:TTY=(?P<tty>\S+) ; )?(?:.*?; )?USER=(?P<target>\S+) ; "
    r"COMMAND=(?P<cmd>.*)$"
)
_IDENTS = (b'"sshd"', b'"sshd-session"', b'"sudo"')
_PROGRAMS = {"sshd": "sshd", "sshd-session": "sshd", "sudo": "sudo"}


def _ident(entry: dict[str, Any]) -> str | None:
    """``sshd``, ``sudo`` or another name: of the process journald saw send the entry."""
    for key in ("_COMM", "SYSLOG_IDENTIFIER"):
        value = entry.get(key)
        if key in entry:  # _COMM present but not a string is still not sshd's
            return _PROGRAMS.get(value, "other") if isinstance(value, str) else None
    return None


def journal_row(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A login row for an sshd or sudo entry, or None."""
    ident, message = _ident(entry), entry.get("MESSAGE")
    if ident not in ("sshd", "sudo") or not isinstance(message, str):
        return None
    stamp = entry.get("__REALTIME_TIMESTAMP")
    ns = int(stamp) * 1000 if isinstance(stamp, str) and stamp.isdigit() else None
    if ident == "sudo":
        m = _SUDO.match(message)
        if not m:
            return None
        return {
            "source": f"journal: sudo to {m['target']}: {m['cmd'][:200]}",
            "user": m["user"],
            "from": m["tty"] or "local",
            "time_ns": ns,
        }
    pid = entry.get("_PID", "0")
    r = parse.auth_row(f"sshd[{pid}]: {message}".encode(), 0, 1970, None)
    if r is None:
        return None
    return {
        "source": f"journal: ssh {r['result']} ({r['method']})",
        "user": r["user"],
        "from": r["address"],
        "time_ns": ns,
    }


def journal_rows(ev: Evidence, art: dict[str, Any], add: Callable[[dict[str, Any]], None]) -> None:
    with ev.stored(art["path"]) as stream:
        if stream is None:
            return
        for number, line, whole in lines(stream, parse.MAX_LINE):
            if number % 4096 == 0 and stream.tell() > parse.MAX_AUTH_BYTES:
                ev.not_examined(
                    art["path"],
                    f"entries {number} to the end were not read",
                    f"the report reads at most {parse.MAX_AUTH_BYTES // 2**30} GiB of one "
                    "journal export",
                )
                return
            if not whole or not any(i in line for i in _IDENTS):
                continue  # most entries: no JSON parsing
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            row = journal_row(entry) if isinstance(entry, dict) else None
            if row is not None:
                add({**row, "artifact": art["path"], "seq": art.get("seq"), "line": number})
