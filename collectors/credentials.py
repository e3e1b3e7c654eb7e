"""``credentials``: cloud and tool credentials in every home (collectors/homes.py), by
stat and SHA-256 only, as ``/etc``'s secrets are (collectors/secrets.py): the evidence
holds no secret, but an examiner must know that ``~/.aws/credentials`` existed, when it
changed and which file it was (the hash lets a lab holding the disk check it, and tells
two hosts' copies of a stolen key apart). One ``skipped`` record a file, with
``secret: true``, its stat and SHA-256, and ``credential`` naming what it is.

Looked for: AWS (``~/.aws``), Kubernetes (``~/.kube``), Docker and Podman registry logins
(``~/.docker/config.json``, ``containers/auth.json``), GnuPG (``~/.gnupg``), Google Cloud,
Azure, SSH private keys (``~/.ssh/id_*``, not the ``.pub``), git, netrc, PostgreSQL and
MySQL password files, npm/PyPI tokens, rclone, s3cmd, Vault, GitHub CLI, Terraform."""

from __future__ import annotations

import os
import stat
from typing import ClassVar

from .base import Collector, Stage
from .context import CollectContext
from .homes import user_homes
from .secrets import record_secret
from .smalltrees import entries, steered_away
from .textview import plural

# (path in a home, what it is); a directory is taken whole (at most MAX_ENTRIES files).
IN_HOME = (
    (b".aws", "aws"), (b".kube", "kubernetes"), (b".docker/config.json", "docker-registry"),
    (b".config/containers/auth.json", "podman-registry"), (b".gnupg", "gnupg"),
    (b".config/gcloud", "google-cloud"), (b".azure", "azure"), (b".git-credentials", "git"),
    (b".netrc", "netrc"), (b".pgpass", "postgresql"), (b".my.cnf", "mysql"),
    (b".mylogin.cnf", "mysql"), (b".npmrc", "npm"), (b".pypirc", "pypi"),
    (b".config/rclone/rclone.conf", "rclone"), (b".s3cfg", "s3cmd"), (b".boto", "boto"),
    (b".vault-token", "vault"), (b".config/gh/hosts.yml", "github-cli"),
    (b".terraform.d/credentials.tfrc.json", "terraform"), (b".ssh", "ssh-private-key"),
)  # fmt: skip
MAX_ENTRIES = 500  # one credential directory (a .gnupg with many keys)
_SSH_KEYS = (b"id_", b"identity")


class CredentialsCollector(Collector):
    name: ClassVar[str] = "credentials"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 47
    description: ClassVar[str] = "cloud and tool credentials in homes: stat and SHA-256 only"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        count = 0
        for home, user in user_homes(self.root):
            for rel, what in IN_HOME:
                path = os.path.join(home, rel)
                if not os.path.lexists(path):
                    continue
                if steered_away(ctx, self.name, home, path):
                    continue
                for found in self._files(ctx, path, what):
                    record_secret(
                        ctx.engine, self.name, found, f"{what} credentials in a home",
                        credential=what, user=user,
                    )  # fmt: skip
                    count += 1
        ctx.summary.add("Credentials", f"{plural(count, 'credential file')} hashed, not copied")

    def _files(self, ctx: CollectContext, path: bytes, what: str) -> list[bytes]:
        """The regular files at ``path`` (itself, or every one under it); in ``~/.ssh``
        only the private keys (the rest is the persistence collector's)."""
        try:
            st = os.lstat(path)
        except OSError:
            return []
        if stat.S_ISREG(st.st_mode):
            return [path]
        if not stat.S_ISDIR(st.st_mode):
            return []
        found = []
        for entry in entries(ctx, self.name, path, MAX_ENTRIES):
            assert entry.stat is not None
            if not stat.S_ISREG(entry.stat.st_mode):
                continue
            name = os.path.basename(entry.path)
            if what == "ssh-private-key" and (
                not name.startswith(_SSH_KEYS) or name.endswith(b".pub")
            ):
                continue
            found.append(entry.path)
        return found
