"""``containers``: Docker, Podman and containerd containers as their on-disk state
describes them (collectors/container_state.py), and every file their writable layers
changed, added or deleted, with its SHA-256.

``artifacts/containers/containers.json``: each container's engine, ID, name, image and
image ID, the image's layers (chain, diff and cache IDs), command, user, state, mounts,
the risky host settings (privileged, binds, capabilities, host network or PID), the
environment variables' names (never their values: passwords are passed that way) and
where its writable layer is. ``artifacts/containers/changes.jsonl``: one line per entry of
each writable layer: the path as the container sees it, ``added-or-changed``,
``deleted`` (an overlay whiteout) or ``directory-replaced`` (an opaque directory), type,
size, mode, owner, times and the SHA-256 of regular files up to ``HASH_MAX``.

containerd's ``meta.db`` and Podman's ``db.sql`` are read (collectors/containerdmeta.py,
collectors/libpod.py) and, holding every container's environment values, recorded by
stat and SHA-256 only; the snapshotters' ``metadata.db`` is copied.

The daemons are not asked: their state is on disk. Only when a Docker socket exists and
its state directory does not (a data root elsewhere) is the API asked, once, for its
container list (``GET /containers/json?all=1``, which carries no environment), recorded
as an ``action`` like a host command. Finding: ``container-layer-executable`` (MEDIUM),
one per container whose writable layer holds an executable it did not start with."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
from typing import Any, ClassVar

from . import container_state as state
from . import containerdmeta
from ._common import LINUX
from .base import Collector, Stage
from .context import CollectContext
from .findings import record_finding, summarize
from .secrets import record_secret
from .staging import row, scan
from .textview import json_bytes, plural
from .walk import walk_stats

if LINUX:
    from . import _linux

LIST = "artifacts/containers/containers.json"
CHANGES = "artifacts/containers/changes.jsonl"
API = "artifacts/containers/docker-api-containers.json"
DOCKER_SOCKET = b"run/docker.sock"
HASH_MAX = 64 * 1024 * 1024  # bytes of one changed file hashed
MAX_ENTRIES = 50_000  # of one writable layer
API_MAX = 16 * 1024 * 1024
RULES = {"container-layer-executable"}
SPECS = "a container database holding environment values (passwords are passed that way)"
WHY = (
    "a container's image is fixed, so an executable that appeared in its writable layer "
    "was put there while it ran: by an update, or by an intruder who got into it"
)


class ContainersCollector(Collector):
    name: ClassVar[str] = "containers"
    stage: ClassVar[Stage] = Stage.SLOW
    order: ClassVar[int] = 75
    description: ClassVar[str] = "Docker/Podman/containerd state and writable-layer changes"
    root: bytes = b"/"  # tests point it at a tree

    def collect(self, ctx: CollectContext) -> None:
        uppers = state.upper_dirs(_linux.mountinfo()) if LINUX and self.root == b"/" else {}
        found = state.docker(self.root)
        for store in state.podman_stores(self.root):
            found += state.podman(store)
        recorded, problems = containerdmeta.stored(self.root)
        found += containerdmeta.merge(state.containerd(self.root, uppers), recorded)
        for problem in problems:
            ctx.error(self.name, f"containerd's meta.db: {problem}", None)
        self._preserve_databases(ctx)
        self._ask_docker_if_needed(ctx)
        if not found:
            ctx.summary.add("Containers", "no container state on disk")
            ctx.engine.drain()
            return
        changed = 0
        with ctx.engine.open_stream(CHANGES, self.name, kind="container-changes") as out:
            for c in found:
                if c.rw_layer is not None:
                    changed += self._changes(ctx, c, out)
        ctx.engine.store_bytes(
            LIST, json_bytes([c.to_dict() for c in found]), self.name, kind="containers"
        )
        ctx.engine.drain()
        engines = sorted({c.engine for c in found})
        ctx.summary.add(
            "Containers",
            f"{len(found)} ({', '.join(engines)}), "
            f"{plural(changed, 'writable-layer entry', 'writable-layer entries')}",
        )
        summarize(ctx, self.name, RULES)

    def _changes(self, ctx: CollectContext, c: state.Container, out: Any) -> int:
        assert c.rw_layer is not None
        layer = c.rw_layer

        def on_error(path: bytes, error: OSError) -> None:
            if error.errno != errno.ENOENT or path != layer:
                ctx.error(self.name, f"cannot list: {error.strerror}", path)

        if not os.path.isdir(layer):
            c.problems.append(f"writable layer {os.fsdecode(layer)} is not on disk")
            return 0
        count, executables = 0, []
        for entry in walk_stats(layer, on_error):
            st = entry.stat
            if st is None:
                continue
            count += 1
            if count > MAX_ENTRIES:
                ctx.engine.record_skip(
                    self.name, layer, f"more than {MAX_ENTRIES} entries: the rest not listed"
                )
                break
            r = row(entry)
            r["container"], r["path"] = c.id, "/" + os.fsdecode(entry.rel)
            r["change"] = _change(entry.path, st)
            if stat.S_ISREG(st.st_mode):
                got = scan(entry.path, st, 4, HASH_MAX)
                r["sha256"] = got[0] if got else None
                if st.st_mode & 0o111 or (got and got[1].startswith((b"\x7fELF", b"#!"))):
                    executables.append(r["path"])
            out.write(json.dumps(r, sort_keys=True).encode() + b"\n")
        if executables:
            name = c.info.get("name") or c.id[:12]
            record_finding(
                ctx, self.name, "container-layer-executable", "MEDIUM", layer,
                f"container {name} ({c.engine} {c.id[:12]}): {len(executables)} executable "
                f"file(s) added or changed in its writable layer, e.g. "
                f"{', '.join(executables[:3])}",
                CHANGES, why=WHY, container=c.id, executables=executables[:20],
            )  # fmt: skip
        return count

    def _preserve_databases(self, ctx: CollectContext) -> None:
        """The engines' own databases. containerd's meta.db and Podman's db.sql and
        bolt_state.db hold each container's OCI spec, environment values included
        (passwords are passed that way): like /etc's secrets, stat and SHA-256 only, what
        was read from them being in containers.json. The snapshotters' metadata.db (IDs
        and parents) is copied."""
        secret = [os.path.join(self.root, state.CONTAINERD_META)]
        for store in state.podman_stores(self.root):
            secret += [os.path.join(store, r) for r in (b"db.sql", b"db.sql-wal",
                                                         b"libpod/bolt_state.db")]  # fmt: skip
        for path in secret:
            if os.path.lexists(path):
                record_secret(ctx.engine, self.name, path, SPECS)
        for name in containerdmeta.SNAPSHOTTERS:
            rel = b"io.containerd.snapshotter.v1." + name + b"/metadata.db"
            path = os.path.join(self.root, containerdmeta.TOP, rel)
            if os.path.lexists(path):
                ctx.engine.submit(path, f"artifacts/containers/containerd/{os.fsdecode(rel)}",
                                  self.name)  # fmt: skip

    def _ask_docker_if_needed(self, ctx: CollectContext) -> None:
        sock = os.path.join(self.root, DOCKER_SOCKET)
        if os.path.isdir(os.path.join(self.root, state.DOCKER)) or not _is_socket(sock):
            return
        request = b"GET /containers/json?all=1 HTTP/1.0\r\nHost: docker\r\n\r\n"
        began = time.monotonic_ns()
        body, error = _http_unix(sock, request)
        ctx.journal.append(
            "action", collector=self.name, action="daemon-api", socket=os.fsdecode(sock),
            request=request.decode().split("\r\n")[0], duration_ns=str(time.monotonic_ns() - began),
            error=error, reason="the Docker socket exists but its state directory does not",
        )  # fmt: skip
        if body:
            ctx.engine.store_bytes(API, body, self.name, kind="daemon-api")


def _change(path: bytes, st: os.stat_result) -> str:
    """What an overlay upper-layer entry means for the container's view."""
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return "deleted"  # a whiteout
    if stat.S_ISDIR(st.st_mode):
        try:
            if os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                return "directory-replaced"
        except OSError:
            pass
    return "added-or-changed"


def _is_socket(path: bytes) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _http_unix(path: bytes, request: bytes) -> tuple[bytes | None, str | None]:
    """The body of one HTTP/1.0 exchange over a Unix socket, bounded in time and size."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(request)
            data = bytearray()
            while len(data) <= API_MAX and (chunk := s.recv(1 << 16)):
                data += chunk
    except OSError as e:
        return None, str(e)
    head, _, body = bytes(data[:API_MAX]).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    return (body, None) if " 200 " in status + " " else (None, status)
