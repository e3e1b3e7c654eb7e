"""``mail``: the local mail spools (``/var/mail``, ``/var/spool/mail``, one of them
usually a symlink to the other). Cron mails each job's output to its owner, so a
planted job's errors, a miner's output or a ``mail``-based exfiltration are often here
and nowhere else. Every entry is listed in ``artifacts/mail/listing.jsonl`` with its
stat and SHA-256; each mailbox is copied under ``artifacts/mail/files/`` within the
profile's caps (``config_max_file_mib`` of one mailbox, ``config_max_total_mib`` in
all). A larger mailbox gives its *last* bytes: an mbox grows at the end, so that is the
newest mail; the row says how much was left."""

from __future__ import annotations

import os
import stat
from typing import ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .logprofile import load_profile
from .smalltrees import MIB, Caps, copy, entries, host_path, listed, write_row
from .textview import plural

LISTING = "artifacts/mail/listing.jsonl"
FILES = "artifacts/mail/files"
SPOOLS = (b"var/mail", b"var/spool/mail")
MAX_ENTRIES = 20_000  # a Maildir holds one file a message
HASH_MAX = 1024 * MIB  # root's cron mail can be gigabytes: beyond this, stat only


class MailCollector(Collector):
    name: ClassVar[str] = "mail"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 46
    description: ClassVar[str] = "local mail spools (/var/mail): listed, hashed, copied within caps"
    root: bytes = b"/"  # tests point it at a tree

    def spools(self) -> list[bytes]:
        found: list[bytes] = []
        for rel in SPOOLS:
            real = os.path.realpath(os.path.join(self.root, rel))  # /var/mail -> spool/mail
            if os.path.isdir(real) and real not in found:
                found.append(real)
        return found

    def collect(self, ctx: CollectContext) -> None:
        triage = (ctx.options.log_profile or load_profile(None)).triage
        mib = triage.config_max_file_mib * MIB
        caps = Caps(mib, triage.config_max_total_mib * MIB, HASH_MAX)
        count = size = 0
        with ctx.engine.open_stream(LISTING, self.name, kind="mail-listing") as out:
            for top in self.spools():
                for entry in entries(ctx, self.name, top, MAX_ENTRIES):
                    assert entry.stat is not None
                    r = listed(entry, host_path(self.root, entry.path), caps)
                    if stat.S_ISREG(entry.stat.st_mode):
                        copy(ctx, self.name, entry, r, FILES, caps, tail=True)
                        size += entry.stat.st_size
                    write_row(out, r)
                    count += 1
        ctx.engine.drain()
        ctx.summary.add("Mail", f"{plural(count, 'file')} in the mail spools, {size:,} bytes")
