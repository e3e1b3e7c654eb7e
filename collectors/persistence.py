"""``persistence``: all of ``/etc`` (secrets by stat and hash only), users' start-up and
SSH files, the cron and at spools, systemd units from every unit path with their state as
the disk records it, udev rules, module-loading configuration: everything an intruder
edits to come back after a reboot or a password change.

Regular files are copied byte-exact through the copy engine under
``artifacts/persistence/<original path>`` (one record each); symlinks and other
non-regular entries of those trees are listed in one artifact, ``links.jsonl``, not one
record each (``/etc`` alone holds hundreds). Secrets (collectors/secrets.py) get a
``skipped`` record with stat and SHA-256. Each file that is a persistence mechanism
(collectors/persistkinds.py) becomes a *fact* in ``entries.jsonl`` (an authorized_keys
file one per key line), judged by the finding rules (collectors/ruleset.py); systemd
units and their enablement, boot and timer state go to ``systemd-units.json``
(collectors/systemdstate.py). Sizes are capped by the profile's ``[triage]`` table."""

from __future__ import annotations

import json
import os
import stat
from typing import Any, ClassVar

from manifests.treewalk import walk as tree_walk

from .base import Collector, Stage
from .context import CollectContext
from .findings import apply_rules, rules_of, summarize, window_start
from .homes import steered, user_homes
from .pathmap import stored_relpath
from .persistkinds import (
    HOME_OTHER,
    HOME_STARTUP,
    authorized_key_lines,
    kind_of,
    parse,
    writable,
)  # fmt: skip
from .persistpkg import PackageIndex, wanted
from .readfile import read_regular
from .redact import redact_fields
from .secrets import record_secret, secret_reason
from .sshpaths import authorized_keys_files, included_files
from .systemdstate import UNIT_DIRS, UnitState, read_state, unit_name
from .textview import json_bytes
from .triagegate import package_db, triage_settings
from .triageprofile import TriageSettings
from .walk import DirId

PREFIX = "artifacts/persistence"
ENTRIES = f"{PREFIX}/entries.jsonl"
LINKS = f"{PREFIX}/links.jsonl"
UNITS = f"{PREFIX}/systemd-units.json"
MIB = 1024 * 1024
READ_CAP = 4 * MIB  # a persistence file read for its facts; larger ones are not parsed
MAX_FILES = 50_000  # per tree; the rest counted in one skipped record
TREES = (
    b"etc", b"var/spool/cron", b"var/spool/at", b"var/spool/atjobs", b"var/spool/anacron",
    *UNIT_DIRS,
    b"var/lib/systemd/timers", b"usr/lib/udev/rules.d", b"lib/udev/rules.d", b"run/udev/rules.d",
    b"usr/lib/modules-load.d", b"lib/modules-load.d", b"run/modules-load.d",
    b"usr/lib/modprobe.d", b"lib/modprobe.d", b"run/modprobe.d",
    *(p + b"/systemd/" + g for p in (b"usr/lib", b"lib", b"usr/local/lib", b"run") for g in (
        b"system-generators", b"user-generators", b"system-environment-generators",
        b"user-environment-generators")),
    *(p + d for p in (b"usr/lib/", b"lib/", b"usr/local/lib/", b"run/")
      for d in (b"tmpfiles.d", b"sysctl.d", b"binfmt.d", b"environment.d")),
    b"usr/share/initramfs-tools", b"usr/lib/dracut/modules.d", b"lib/dracut/modules.d",
    b"usr/lib/dracut/dracut.conf.d",
    b"usr/local/lib/systemd/user", b"usr/share/systemd/user", b"usr/local/share/systemd/user",
    b"usr/share/dbus-1/system-services", b"usr/share/dbus-1/services",
    b"usr/local/share/dbus-1/system-services", b"usr/share/polkit-1/rules.d",
    b"var/lib/sudo/lectured",  # one file a user, made at their first sudo
)  # fmt: skip
# Per-user runtime units (systemd-run --user, user generators), one tree for each /run/user/UID.
RUNTIME_USER_TREES = (b"systemd/transient", b"systemd/generator", b"systemd/generator.late")
_LINK_PARENTS = (".wants", ".requires", ".upholds")


class PersistenceCollector(Collector):
    name: ClassVar[str] = "persistence"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 40  # before the long triage collectors: seconds, not minutes
    description: ClassVar[str] = "/etc, start-up and SSH files, cron, systemd units, PAM, udev"
    root: bytes = b"/"  # tests point it at a tree

    def sources(self) -> list[bytes]:
        return [os.path.join(self.root, b"etc")]

    def collect(self, ctx: CollectContext) -> None:
        settings = triage_settings(ctx, self.name, "Persistence")
        if settings is None:
            return
        homes = user_homes(self.root)
        db = package_db(ctx, self.root, keep=wanted)
        units = read_state(self.root, [h for h, _ in homes])
        run = _Run(ctx, self.name, self.root, settings, PackageIndex(db), units)
        with (
            ctx.engine.open_stream(ENTRIES, self.name, kind="persistence-entries") as facts,
            ctx.engine.open_stream(LINKS, self.name, kind="links") as links,
        ):
            run.facts_out, run.links_out = facts, links
            keys = authorized_keys_files(self.root)
            run.named = {path: ("authorized-keys", user) for path, user in keys}
            for top in _tops(self.root):
                run.tree(top)
            for home, user in homes:
                run.home(home, user)
            for path in included_files(self.root):
                if not run.covered(path):
                    run.one(path, None, "")
            for path, user in keys:
                if not run.covered(path):
                    run.one(path, "authorized-keys", user)
        ctx.engine.drain()
        ctx.engine.store_bytes(UNITS, json_bytes(run.unit_rows), self.name, kind="systemd-units")
        ctx.summary.add(
            "Persistence",
            f"{run.copied} files, {run.secrets} secrets hashed only, {run.nfacts} entries, "
            f"{len(run.unit_rows)} systemd units",
        )
        summarize(ctx, self.name, rules_of(ctx).ids("persistence"))


def _tops(root: bytes) -> list[bytes]:
    """The trees to walk, each real directory once (``/lib`` is ``/usr/lib`` when /usr
    is merged), none inside another."""
    found: list[bytes] = []
    run_user = os.path.join(root, b"run/user")
    try:
        uids = sorted(os.listdir(run_user))
    except OSError:
        uids = []
    runtime = [os.path.join(b"run/user", uid, t) for uid in uids for t in RUNTIME_USER_TREES]
    for rel in (*TREES, *runtime):
        real = os.path.realpath(os.path.join(root, rel))
        if os.path.isdir(real) and not any(
            real == t or real.startswith(t.rstrip(b"/") + b"/") for t in found
        ):
            found.append(real)
    return found


class _Run:
    """One collection's state: caps used so far, the open listings, the facts."""

    def __init__(
        self, ctx: CollectContext, name: str, root: bytes, settings: TriageSettings,
        packages: PackageIndex, units: UnitState,
    ) -> None:  # fmt: skip
        self.ctx, self.name, self.root, self.packages = ctx, name, root, packages
        self.units = units
        self.max_file = settings.config_max_file_mib * MIB
        self.left = settings.config_max_total_mib * MIB
        self.window = window_start(ctx, settings.detection_window_days)
        self.tops: list[bytes] = []
        # Files sshd_config names as AuthorizedKeysFile: (kind, user), wherever they are.
        self.named: dict[bytes, tuple[str | None, str]] = {}
        self.copied = self.secrets = self.nfacts = 0
        self.unit_rows: list[dict[str, Any]] = []
        self.facts_out: Any = None
        self.links_out: Any = None
        out = os.stat(ctx.root)
        self.exclude = frozenset({(out.st_dev, out.st_ino)})

    def host_name(self, path: bytes) -> str:
        """The path as the host names it (without the test's root)."""
        rel = path[len(self.root.rstrip(b"/")) :] if self.root != b"/" else path
        return os.fsdecode(rel or b"/")

    def covered(self, path: bytes) -> bool:
        real = os.path.realpath(path)
        return any(real.startswith(t.rstrip(b"/") + b"/") for t in self.tops)

    def tree(self, top: bytes, kind: str | None = None, user: str = "") -> None:
        def on_error(path: bytes, error: OSError) -> None:
            self.ctx.error(self.name, f"cannot list: {error.strerror}", path)

        self.tops.append(top)
        entries = tree_walk(top, on_error, lstat=True, exclude=self.exclude)
        for count, entry in enumerate(entries, 1):
            if self.ctx.engine.stopped.is_set():
                return
            if count > MAX_FILES:
                self.ctx.engine.record_skip(
                    self.name, top, f"more than {MAX_FILES} entries: the rest not read",
                    cap=MAX_FILES,
                )  # fmt: skip
                return
            self.entry(entry.path, entry.parent, entry.stat, kind, user)

    def home(self, home: bytes, user: str) -> None:
        items = [(rel, "startup-file") for rel in HOME_STARTUP] + list(HOME_OTHER)
        for rel, kind in items:
            path = os.path.join(home, rel)
            if not os.path.lexists(path):
                continue
            target = steered(home, path)
            if target is not None:
                self.ctx.engine.record_skip(
                    self.name, path, "a directory on the way is a symlink: not followed",
                    target=os.fsdecode(target),
                )  # fmt: skip
                continue
            if self.covered(path):  # a home inside a tree already walked (/etc/...)
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                self.tree(path, kind, user)
            else:
                self.one(path, kind, user)

    def one(self, path: bytes, kind: str | None, user: str) -> None:
        try:
            st = os.lstat(path)
        except OSError as e:
            self.ctx.error(self.name, f"cannot stat: {e.strerror}", path)
            return
        self.entry(path, None, st, kind, user)

    def entry(
        self, path: bytes, parent: DirId | None, st: os.stat_result | None, kind: str | None,
        user: str,
    ) -> None:  # fmt: skip
        if st is None:
            return
        name = self.host_name(path)
        kind, user = self.named.get(path, (kind, user))
        kind = kind_of(name, kind)
        if not stat.S_ISREG(st.st_mode):
            self.link(path, name, st, kind, user)
            return
        reason = secret_reason(name, path)
        if reason is not None:
            self.secrets += 1
            record_secret(self.ctx.engine, self.name, path, reason)
            return
        if st.st_size > self.max_file or st.st_size > self.left:
            cap = "per file" if st.st_size > self.max_file else "in total"
            self.ctx.engine.record_skip(
                self.name, path, f"larger than the profile's cap {cap}: recorded, not copied",
                size=st.st_size,
            )  # fmt: skip
            return
        self.left -= st.st_size
        self.copied += 1
        dest = f"{PREFIX}/{stored_relpath(os.fsencode(name))}"
        # The copy is of the size checked against the caps: reading the file for its
        # facts is an open its owner can watch for, and a sparse file grows for free.
        size = st.st_size
        if kind is None:
            self.ctx.engine.submit(path, dest, self.name, parent_id=parent, limit=size)
            return
        try:
            data = read_regular(path, READ_CAP, follow=False)
        except OSError:
            data = None
        record = self.ctx.engine.preserve(
            path, dest, self.name, parent_id=parent, kind=kind, limit=size
        )
        artifact = record["path"] if record else None
        self.facts(path, name, st, kind, user, data, artifact)

    def link(self, path: bytes, name: str, st: os.stat_result, kind: str | None, user: str) -> None:
        """A symlink (or FIFO, device...) in a tree: a line of ``links.jsonl``; a symlink
        that is itself a unit, a cron entry or a preload is a fact too."""
        target = None
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.fsdecode(os.readlink(path))
            except OSError:
                target = None
        row = {
            "path": name, "type": stat.filemode(st.st_mode)[0], "target": target,
            "uid": st.st_uid, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
        }  # fmt: skip
        self.links_out.write(json.dumps(row, sort_keys=True).encode() + b"\n")
        parent = os.path.basename(os.path.dirname(name))
        if kind is None or target is None or parent.endswith(_LINK_PARENTS) or parent[:2] == "rc":
            return
        absolute = os.path.normpath(os.path.join(os.path.dirname(name), target))
        fact = self.base(path, name, st, kind, user, None)
        fact.update(targets=[absolute], entries=1, writable_target=writable(self.root, absolute))
        self.emit(path, fact, None)

    def base(
        self, path: bytes, name: str, st: os.stat_result, kind: str, user: str, data: bytes | None
    ) -> dict[str, Any]:
        fact: dict[str, Any] = {
            "path": name, "kind": kind, "user": user,
            "changed_ns": max(st.st_mtime_ns, st.st_ctime_ns),
            "mtime_ns": st.st_mtime_ns, "uid": st.st_uid, "mode": f"{st.st_mode:o}",
            "package_state": self.packages.state(path, data, READ_CAP),
        }  # fmt: skip
        if kind.startswith("systemd-"):
            unit = unit_name(path)
            if unit is not None:
                state = self.units.fields(unit)
                linked = self.units.link_changed_ns(unit)
                fact.update(unit=unit, enabled=state["enabled"], started=state["started"])
                if linked is not None:
                    fact["changed_ns"] = max(fact["changed_ns"], linked)
                self.unit_rows.append({"unit": unit, "path": name, "kind": kind, **state})
        return fact

    def facts(
        self, path: bytes, name: str, st: os.stat_result, kind: str, user: str,
        data: bytes | None, artifact: str | None,
    ) -> None:  # fmt: skip
        fact = self.base(path, name, st, kind, user, data)
        text = data.decode("utf-8", "surrogateescape") if data is not None else ""
        if kind == "authorized-keys":
            for line_no, line, targets in authorized_key_lines(text):
                row = {**fact, "line_no": line_no, "line": line[:300], "targets": targets}
                row["writable_target"] = any(writable(self.root, t) for t in [name, *targets])
                self.emit(path, row, artifact)
            return
        fact.update(parse(kind, text, self.root))
        # The file itself counts: an AuthorizedKeysFile or Include in /var/tmp is anyone's.
        fact["writable_target"] = any(writable(self.root, t) for t in [name, *fact["targets"]])
        loaded = fact["modules"] if kind == "pam" else fact["targets"]
        fact["targets_unpackaged"] = self.packages.any_unpackaged(self.root, loaded)
        self.emit(path, fact, artifact)

    def emit(self, path: bytes, fact: dict[str, Any], artifact: str | None) -> None:
        self.nfacts += 1
        apply_rules(self.ctx, self.name, "persistence", fact, path, artifact, self.window)
        row, _ = redact_fields({**fact, "artifact": artifact})  # the copy has the line as is
        self.facts_out.write(json.dumps(row, sort_keys=True, default=str).encode() + b"\n")
