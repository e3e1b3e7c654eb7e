"""``accounts``: who may log in and what they typed. Every account of ``/etc/passwd``
(read directly, collectors/homes.py) compared with Debian's base-passwd defaults; every
user's shell and tool histories, including a ``HISTFILE`` a start-up file moved
elsewhere; ``lastlog`` and ``faillog`` copied raw and parsed into JSON.

Artifacts under ``artifacts/accounts/``: ``accounts.json`` (each account with its login
shell and whether its default has one), ``histories.json`` (which history files were
found and why), each history file byte-exact under its original path, ``lastlog.json``
and ``faillog.json`` beside the raw copies. Facts for the rules (collectors/ruleset.py):
one ``account`` per passwd line, one ``history-line`` per command typed."""

from __future__ import annotations

import os
import stat
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .findings import apply_rules, rules_of, summarize, window_start
from .histories import HISTORY_FILES, custom_histfiles, history_lines
from .homes import Account, read_passwd, steered, user_homes
from .lastlog import parse_faillog, parse_lastlog
from .pathmap import stored_relpath
from .secrets import secret_reason
from .source import open_seen
from .textview import json_bytes
from .triagegate import triage_settings

PREFIX = "artifacts/accounts"
ACCOUNTS = f"{PREFIX}/accounts.json"
HISTORIES = f"{PREFIX}/histories.json"
MIB = 1024 * 1024
NOLOGIN = frozenset({
    "/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync",
    "/usr/bin/sync", "/sbin/shutdown", "/usr/sbin/shutdown", "/sbin/halt", "/usr/sbin/halt",
    "/bin/true", "/usr/bin/true",
})  # fmt: skip
# Debian's base-passwd 3.6 passwd.master (bookworm): the accounts every Debian host
# starts with, by name: (UID, shell). Only root has a login shell.
BASE_PASSWD = {
    "root": (0, "/bin/bash"), "daemon": (1, "/usr/sbin/nologin"), "bin": (2, "/usr/sbin/nologin"),
    "sys": (3, "/usr/sbin/nologin"), "sync": (4, "/bin/sync"), "games": (5, "/usr/sbin/nologin"),
    "man": (6, "/usr/sbin/nologin"), "lp": (7, "/usr/sbin/nologin"),
    "mail": (8, "/usr/sbin/nologin"), "news": (9, "/usr/sbin/nologin"),
    "uucp": (10, "/usr/sbin/nologin"), "proxy": (13, "/usr/sbin/nologin"),
    "www-data": (33, "/usr/sbin/nologin"), "backup": (34, "/usr/sbin/nologin"),
    "list": (38, "/usr/sbin/nologin"), "irc": (39, "/usr/sbin/nologin"),
    "gnats": (41, "/usr/sbin/nologin"), "_apt": (42, "/usr/sbin/nologin"),
    "nobody": (65534, "/usr/sbin/nologin"),
}  # fmt: skip
LOGS = (
    (b"var/log/lastlog", "lastlog", parse_lastlog),
    (b"var/log/faillog", "faillog", parse_faillog),
)


def login_shell(shell: str) -> bool:
    """Can the account log in with it? An empty field means ``/bin/sh`` to login(1)."""
    return shell.strip() not in NOLOGIN


def account_fact(a: Account) -> dict[str, Any]:
    base = BASE_PASSWD.get(a.name)
    system = a.uid < 1000 or a.uid == 65534
    return {
        "path": "/etc/passwd", "line_no": a.line_no, "name": a.name, "uid": a.uid, "gid": a.gid,
        "home": os.fsdecode(a.home), "shell": a.shell, "login_shell": login_shell(a.shell),
        "system": system, "base_account": base is not None,
        # Packages create their system accounts without a shell (adduser --system).
        "default_login_shell": login_shell(base[1]) if base else False,
    }  # fmt: skip


class AccountsCollector(Collector):
    name: ClassVar[str] = "accounts"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 42
    description: ClassVar[str] = "accounts, shell histories, lastlog and faillog"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        settings = triage_settings(ctx, self.name, "Accounts")
        if settings is None:
            return
        self.cap = settings.config_max_file_mib * MIB
        self.window = window_start(ctx, settings.detection_window_days)
        accounts = read_passwd(self.root)
        facts = [account_fact(a) for a in accounts]
        ctx.engine.store_bytes(ACCOUNTS, json_bytes(facts), self.name, kind="accounts")
        for fact in facts:
            apply_rules(ctx, self.name, "account", fact, b"/etc/passwd", ACCOUNTS)
        found = self._histories(ctx)
        ctx.engine.store_bytes(HISTORIES, json_bytes(found), self.name, kind="histories")
        names: dict[int, str] = {}
        for a in accounts:  # the first name of a user ID, as getpwuid(3) answers
            names.setdefault(a.uid, a.name)
        for rel, label, parse in LOGS:
            self._binary_log(ctx, os.path.join(self.root, rel), label, parse, names)
        ctx.engine.drain()
        ctx.summary.add("Accounts", f"{len(facts)} accounts, {len(found)} history files")
        summarize(ctx, self.name, rules_of(ctx).ids("account", "history-line"))

    def _host(self, path: bytes) -> bytes:
        return path[len(self.root.rstrip(b"/")) :] if self.root != b"/" else path

    def _histories(self, ctx: CollectContext) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        seen: set[tuple[int, int]] = set()
        for home, user in user_homes(self.root):
            wanted: list[tuple[bytes, str, bool, bytes | None]] = [
                (os.path.join(home, rel), shell, lines, None) for rel, shell, lines in HISTORY_FILES
            ]
            for custom, named_in in custom_histfiles(self.root, home, self._host(home)):
                name = os.path.basename(custom)
                shell = "zsh" if b"zsh" in name or b"zhist" in name else "bash"
                wanted.append((custom, shell, True, named_in))
            for path, shell, lines, source in wanted:
                # Once per file, by the entry itself: by its symlink's target, alice's
                # .bash_history -> bob's would make bob's own file a duplicate, not read.
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                if path.startswith(home + b"/") and steered(home, path) is not None:
                    ctx.engine.record_skip(
                        self.name, path, "a directory on the way is a symlink: not followed",
                        target=os.fsdecode(os.path.realpath(path)),
                    )  # fmt: skip
                    continue
                row = self._checked(ctx, home, path, st, user, shell, lines, source)
                if row is not None:
                    row["histfile_from"] = os.fsdecode(self._host(source)) if source else None
                    found.append(row)
        return found

    def _checked(
        self, ctx: CollectContext, home: bytes, path: bytes, st: os.stat_result, user: str,
        shell: str, judged: bool, source: bytes | None,
    ) -> dict[str, Any] | None:  # fmt: skip
        """Check a history file and copy it by one descriptor: the file found to be the
        home's (``_not_a_history``) and within the cap is the one copied and judged, even
        if its owner renames another file (``/etc/shadow``'s link) over it meanwhile."""
        fd = open_seen(path, st) if stat.S_ISREG(st.st_mode) else None
        if fd is None and stat.S_ISREG(st.st_mode):
            ctx.engine.record_error(self.name, path, "replaced since it was examined; not read")
            return None
        try:
            st = os.fstat(fd) if fd is not None else st
            refused = self._not_a_history(home, path, st) if source else None
            if refused is not None:
                by = os.fsdecode(self._host(source or b""))
                ctx.engine.record_skip(
                    self.name, path, f"named as a history by {by}, but {refused}: not copied",
                    uid=st.st_uid,
                )  # fmt: skip
                return None
            if fd is None:
                ctx.engine.skip_not_regular(self.name, path, st)
                return None
            return self._history(ctx, fd, st, path, user, shell, judged)
        finally:
            if fd is not None:
                os.close(fd)

    def _not_a_history(self, home: bytes, path: bytes, st: os.stat_result) -> str | None:
        """Why a ``HISTFILE`` a start-up file names is not this home's history: anyone
        can write ``HISTFILE=/etc/shadow`` in their own ``.bashrc``, and copying it would
        put the host's password hashes on the evidence drive on their say-so. A shell
        writes its history as the user, so the file is theirs; and a secret is never one."""
        try:
            owner = os.stat(home).st_uid
        except OSError:
            return "its home cannot be read"
        if st.st_uid != owner:
            return f"owned by uid {st.st_uid}, not by the home's owner (uid {owner})"
        if secret_reason(os.fsdecode(self._host(path)), path) is not None:
            return "a secret by its name (password hashes, a key, credentials)"
        return None

    def _history(
        self, ctx: CollectContext, fd: int, st: os.stat_result, path: bytes, user: str,
        shell: str, judged: bool,
    ) -> dict[str, Any] | None:  # fmt: skip
        host = self._host(path)
        if st.st_size > self.cap:
            ctx.engine.record_skip(
                self.name, path, "larger than the profile's cap per file: recorded, not copied",
                size=st.st_size,
            )  # fmt: skip
            return None
        record = ctx.engine.preserve_open(
            fd, path, f"{PREFIX}/{stored_relpath(host)}", self.name, kind="history"
        )
        if record is None:
            return None
        artifact = record["path"]
        commands = 0
        if judged:
            try:  # the bytes copied, as far as they were not rewritten since
                text = os.pread(fd, record["size"], 0).decode("utf-8", "surrogateescape")
            except OSError:
                text = ""
            for line_no, line, when in history_lines(text, shell):
                commands += 1
                fact = {
                    "path": os.fsdecode(host), "user": user, "shell": shell, "line": line,
                    "line_no": line_no, **({"changed_ns": when} if when else {}),
                }  # fmt: skip
                apply_rules(ctx, self.name, "history-line", fact, path, artifact, self.window)
        return {"path": os.fsdecode(host), "user": user, "shell": shell, "artifact": artifact,
                "commands": commands if judged else None}  # fmt: skip

    def _binary_log(
        self, ctx: CollectContext, path: bytes, label: str, parse: Any, names: dict[int, str]
    ) -> None:
        if not os.path.lexists(path):
            return
        host = self._host(path)
        ctx.engine.preserve(path, f"{PREFIX}/{stored_relpath(host)}", self.name, kind=label)
        try:
            rows = parse(path, names)
        except OSError as e:
            ctx.error(self.name, f"cannot parse {label}: {e.strerror}", path)
            return
        ctx.engine.store_bytes(
            f"{PREFIX}/{label}.json", json_bytes(rows), self.name, kind=f"{label}-parsed",
            parsed_from=os.fsdecode(host),
        )  # fmt: skip
