"""``browsers``: web browsers' history databases in every home (collectors/homes.py):
Firefox's ``places.sqlite`` (visits, downloads, bookmarks) and the ``History`` database
of Chrome, Chromium, Brave, Edge, Opera and Vivaldi, with their write-ahead logs (the
newest visits may be only there), including snap and Flatpak installs. On a server a
browser is rare, and that is the point: an intruder with a desktop session who browsed
to a paste site or a file drop leaves it here. Copied byte-exact under
``artifacts/browsers/`` within ``config_max_file_mib`` a file and ``config_max_total_mib``
in all; ``artifacts/browsers/histories.json`` lists what was found. Cookies, saved
logins and form history are not collected: they are credentials."""

from __future__ import annotations

import os
import stat
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .homes import user_homes
from .logprofile import load_profile
from .pathmap import stored_relpath
from .smalltrees import MIB, host_path, steered_away
from .textview import json_bytes, plural

PREFIX = "artifacts/browsers"
LIST = f"{PREFIX}/histories.json"
FIREFOX = (b"places.sqlite", b"places.sqlite-wal", b"downloads.sqlite")
CHROMIUM = (b"History", b"History-journal", b"History-wal")
# (directory in a home holding profiles, browser, the files of one profile)
PLACES = (
    (b".mozilla/firefox", "firefox", FIREFOX),
    (b"snap/firefox/common/.mozilla/firefox", "firefox", FIREFOX),
    (b".var/app/org.mozilla.firefox/.mozilla/firefox", "firefox", FIREFOX),
    (b".config/google-chrome", "chrome", CHROMIUM),
    (b".config/google-chrome-beta", "chrome", CHROMIUM),
    (b".config/google-chrome-unstable", "chrome", CHROMIUM),
    (b".config/chromium", "chromium", CHROMIUM),
    (b"snap/chromium/common/chromium", "chromium", CHROMIUM),
    (b".var/app/org.chromium.Chromium/config/chromium", "chromium", CHROMIUM),
    (b".config/BraveSoftware/Brave-Browser", "brave", CHROMIUM),
    (b".config/microsoft-edge", "edge", CHROMIUM),
    (b".config/microsoft-edge-beta", "edge", CHROMIUM),
    (b".config/opera", "opera", CHROMIUM),
    (b".config/vivaldi", "vivaldi", CHROMIUM),
)
MAX_PROFILES = 100  # directories looked into under one browser's directory


def _real_dirs(base: bytes) -> list[tuple[bytes, tuple[int, int]]]:
    """``base`` and its subdirectories (the profiles), none of them a symlink, each with
    its (device, inode) for the copy to open the file in that very directory."""
    found = []
    try:
        st = os.lstat(base)
    except OSError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        return []
    found.append((base, (st.st_dev, st.st_ino)))
    try:
        with os.scandir(base) as it:
            subdirs = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return found
    for name in subdirs[:MAX_PROFILES]:
        try:
            sub = os.lstat(os.path.join(base, name))
        except OSError:
            continue
        found.append((os.path.join(base, name), (sub.st_dev, sub.st_ino)))
    return found


class BrowsersCollector(Collector):
    name: ClassVar[str] = "browsers"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 48
    description: ClassVar[str] = "browser history databases in homes (Firefox, Chromium family)"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        triage = (ctx.options.log_profile or load_profile(None)).triage
        per_file, self.left = triage.config_max_file_mib * MIB, triage.config_max_total_mib * MIB
        found: list[dict[str, Any]] = []
        for home, user in user_homes(self.root):
            for rel, browser, names in PLACES:
                base = os.path.join(home, rel)
                if not os.path.lexists(base):
                    continue
                if steered_away(ctx, self.name, home, base):
                    continue
                for directory, dir_id in _real_dirs(base):
                    for name in names:
                        path = os.path.join(directory, name)
                        row = self._one(ctx, path, dir_id, per_file)
                        if row is not None:
                            found.append({"user": user, "browser": browser, **row})
        ctx.engine.drain()
        if found:
            ctx.engine.store_bytes(LIST, json_bytes(found), self.name, kind="browser-histories")
        ctx.summary.add("Browsers", f"{plural(len(found), 'history file')} in homes")

    def _one(
        self, ctx: CollectContext, path: bytes, dir_id: tuple[int, int], per_file: int
    ) -> dict[str, Any] | None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        host = host_path(self.root, path)
        row: dict[str, Any] = {"path": host, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if st.st_size > per_file or st.st_size > self.left:
            cap = "config_max_file_mib" if st.st_size > per_file else "config_max_total_mib"
            ctx.engine.record_skip(
                self.name, path, f"larger than the profile's cap ({cap}): recorded, not copied",
                size=st.st_size,
            )  # fmt: skip
            row["not_copied"] = cap
            return row
        self.left -= st.st_size
        rel = f"{PREFIX}/{stored_relpath(os.fsencode(host))}"
        record = ctx.engine.preserve(path, rel, self.name, parent_id=dir_id, kind="browser-history")
        row["artifact"] = record["path"] if record else None
        row["sha256"] = record.get("sha256") if record else None
        return row
