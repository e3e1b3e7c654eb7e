"""``boot``: what runs before the operating system does. Every file under ``/boot``
(kernels, initramfs images, ``System.map``, the kernel build configuration, GRUB and
systemd-boot configuration, and the EFI system partition when it is mounted there) by
stat and SHA-256 in ``artifacts/boot/listing.jsonl``; the configuration files (GRUB's
``grub.cfg``, ``grubenv``, ``custom.cfg``, the boot loader entries, ``config-*``) copied
under ``artifacts/boot/files/``. Kernels and initramfs images are hashed, not copied:
tens of megabytes each, and the hash is what a lab compares with the package or a
rebuilt image. The initramfs hooks that build the image are persistence entries
(collectors/persistkinds.py, kind ``initramfs``).

The running kernel's command line (``/proc/cmdline``) is stored as
``artifacts/boot/proc-cmdline.txt``. Facts (``boot-file``) for the rules: each file's
kind, hash and change time, and for a boot loader configuration and the running command
line the ``init=``/``rdinit=`` it gives the kernel. The binary formats the kernel has
registered (``/proc/sys/fs/binfmt_misc``) go to ``artifacts/boot/binfmt-misc.json``, each
a fact with its interpreter. Rules
``boot-file-changed-in-window`` and ``boot-init-override`` (collectors/rules/triage.toml)."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from typing import Any, ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .findings import apply_rules, rules_of, summarize, window_start
from .logprofile import load_profile
from .persistkinds import writable
from .readfile import read_regular
from .smalltrees import MIB, Caps, copy, entries, host_path, listed, write_row
from .textview import json_bytes, plural

LISTING = "artifacts/boot/listing.jsonl"
FILES = "artifacts/boot/files"
CMDLINE = "artifacts/boot/proc-cmdline.txt"
BINFMT = b"/proc/sys/fs/binfmt_misc"
BINFMT_LIST = "artifacts/boot/binfmt-misc.json"
MAX_BINFMT = 1000
PROC_CMDLINE = b"/proc/cmdline"
MAX_ENTRIES = 5_000  # /boot holds tens of files; an ESP a few hundred
HASH_MAX = 512 * MIB  # one file; an initramfs is rarely over 200 MiB
CONFIG_MAX = 4 * MIB  # a configuration file copied and read for init=
# (kind, patterns on the path below /boot); the first that matches wins.
KINDS = (
    ("kernel", ("vmlinuz*", "vmlinux*", "kernel*", "bzImage*", "Image*", "*/linux", "*/vmlinuz")),
    ("initramfs", ("initrd*", "initramfs*", "*/initrd", "*/initramfs*")),
    ("bootloader-config", (
        "grub/grub.cfg", "grub2/grub.cfg", "grub/custom.cfg", "grub2/custom.cfg", "grub/grubenv",
        "grub2/grubenv", "grub*/*.cfg", "loader/loader.conf", "loader/entries/*.conf",
        "efi/EFI/*/grub.cfg", "efi/EFI/*/grubenv", "efi/loader/*.conf", "efi/loader/entries/*",
        "extlinux/*.conf", "syslinux/*.cfg", "cmdline.txt", "config.txt",
    )),
    ("efi-binary", ("*.efi", "*.EFI")),
    ("system-map", ("System.map*",)),
    ("kernel-config", ("config-*",)),
)  # fmt: skip
COPIED = ("bootloader-config", "kernel-config")
_KIND_RES = tuple((k, re.compile("|".join(map(fnmatch.translate, ps)))) for k, ps in KINDS)
_INIT = re.compile(r"(?<![\w.-])(rd)?init=(\S+)")


def _names(path: bytes) -> list[bytes]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def kind_of(rel: str) -> str:
    """The kind of a file by its path below /boot."""
    for kind, pattern in _KIND_RES:
        if pattern.match(rel):
            return kind
    return "other"


def init_override(text: str) -> str | None:
    """The first active ``init=``/``rdinit=`` on a kernel command line in ``text``."""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _INIT.search(line)
        if m:
            return m.group(0)
    return None


class BootCollector(Collector):
    name: ClassVar[str] = "boot"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 44
    description: ClassVar[str] = "/boot: kernels and initramfs by hash, boot loader config copied"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        triage = (ctx.options.log_profile or load_profile(None)).triage
        caps = Caps(CONFIG_MAX, triage.config_max_total_mib * MIB, HASH_MAX)
        window = window_start(ctx, triage.detection_window_days)
        top = os.path.join(self.root, b"boot")
        if not os.path.isdir(top) or os.path.islink(top):
            ctx.summary.add("Boot", "no /boot directory")
            return
        count = hashed = 0
        with ctx.engine.open_stream(LISTING, self.name, kind="boot-listing") as out:
            for entry in entries(ctx, self.name, top, MAX_ENTRIES):
                assert entry.stat is not None
                host = host_path(self.root, entry.path)
                r = listed(entry, host, caps)
                r["kind"] = kind = kind_of(os.fsdecode(entry.rel))
                count += 1
                hashed += r.get("sha256") is not None
                fact: dict[str, Any] = {
                    "path": host, "kind": kind, "sha256": r.get("sha256"), "size": r["size"],
                    "changed_ns": max(entry.stat.st_mtime_ns, entry.stat.st_ctime_ns),
                }  # fmt: skip
                artifact = LISTING
                if stat.S_ISREG(entry.stat.st_mode) and kind in COPIED:
                    stored = copy(ctx, self.name, entry, r, FILES, caps)
                    if stored and r["copied"] == r["size"]:
                        artifact = stored
                    fact["init_override"] = self._init(entry.path)
                write_row(out, r)
                if stat.S_ISREG(entry.stat.st_mode):
                    apply_rules(ctx, self.name, "boot-file", fact, entry.path, artifact, window)
        self._running(ctx, window)
        self._binfmt(ctx)
        ctx.engine.drain()
        ctx.summary.add("Boot", f"{plural(count, 'file')} under /boot, {hashed} hashed")
        summarize(ctx, self.name, rules_of(ctx).ids("boot-file"))

    def _running(self, ctx: CollectContext, window: int) -> None:
        """The running kernel's command line, as the kernel reports it: what it was
        actually started with, whatever the configuration files on disk say now."""
        if self.root != b"/":
            return
        try:
            data = read_regular(PROC_CMDLINE, CONFIG_MAX, follow=False)
        except OSError as e:
            ctx.error(self.name, f"cannot read: {e.strerror}", PROC_CMDLINE)
            return
        ctx.engine.store_bytes(CMDLINE, data, self.name, kind="kernel-cmdline")
        text = data.decode("utf-8", "surrogateescape")
        fact = {"path": "/proc/cmdline", "kind": "running-cmdline", "size": len(data),
                "init_override": init_override(text)}  # fmt: skip
        apply_rules(ctx, self.name, "boot-file", fact, PROC_CMDLINE, CMDLINE, window)

    def _binfmt(self, ctx: CollectContext) -> None:
        """The binary formats the running kernel has registered (``binfmt_misc``): the
        interpreter it starts for every file that matches, whether a ``binfmt.d`` file or
        a bare ``echo > register`` put it there (the latter leaves no file on disk)."""
        if self.root != b"/":
            return
        rows = []
        for name in sorted(_names(BINFMT))[:MAX_BINFMT]:
            if name in (b"register", b"status"):
                continue
            path = os.path.join(BINFMT, name)
            try:
                text = read_regular(path, 64 * 1024, follow=False).decode("utf-8", "replace")
            except OSError as e:
                ctx.error(self.name, f"cannot read: {e.strerror}", path)
                continue
            fields = dict(line.split(" ", 1) for line in text.splitlines()[1:] if " " in line)
            interpreter = fields.get("interpreter", "").strip()
            row = {"name": os.fsdecode(name), "enabled": text.startswith("enabled"),
                   "interpreter": interpreter, "flags": fields.get("flags:", "").strip(),
                   "magic": fields.get("magic"), "extension": fields.get("extension")}  # fmt: skip
            rows.append(row)
            fact = {
                "path": os.fsdecode(path), "kind": "binfmt-registration",
                "interpreter": interpreter, "writable_target": writable(b"/", interpreter),
            }  # fmt: skip
            apply_rules(ctx, self.name, "boot-file", fact, path, BINFMT_LIST)
        if rows:
            ctx.engine.store_bytes(BINFMT_LIST, json_bytes(rows), self.name, kind="binfmt-misc")

    @staticmethod
    def _init(path: bytes) -> str | None:
        try:
            data = read_regular(path, CONFIG_MAX, follow=False)
        except OSError:
            return None
        return init_override(data.decode("utf-8", "surrogateescape"))
