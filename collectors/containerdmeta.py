"""containerd's containers as its metadata database records them, running or not: the
BoltDB ``io.containerd.metadata.v1.bolt/meta.db`` (read by collectors/bbolt.py) and the
snapshotter's own ``metadata.db``, which together say which directory holds a stopped
container's writable layer (a running one's is also in its rootfs overlay mount).

Layout (containerd ``metadata/buckets.go``): ``v1/<namespace>/containers/<id>`` holds
``image``, ``snapshotter``, ``snapshotKey``, ``runtime/name``, ``createdat`` and
``updatedat`` (Go ``time.MarshalBinary``), ``labels/*``, and ``spec`` (the OCI spec as a
protobuf ``Any``: it holds the environment's values, so it is not read);
``v1/<namespace>/snapshots/<snapshotter>/<key>/name`` is the snapshotter's own key;
``v1/<namespace>/images/<name>/target/digest`` the image's digest. The overlayfs and
native snapshotters (``snapshots/storage/bolt.go``) keep ``v1/snapshots/<name>/id`` (a
uvarint) and ``kind`` (1 view, 2 active, 3 committed); the layer is
``snapshots/<id>/fs`` (overlayfs) or ``snapshots/<id>`` (native)."""

from __future__ import annotations

import datetime
import os

from .bbolt import BoltError, Bucket, open_bolt
from .container_state import CONTAINERD_META, UNMOUNTED, Container

TOP = b"var/lib/containerd"
SNAPSHOTTERS = {b"overlayfs": b"fs", b"native": b""}  # name -> layer dir below snapshots/<id>
KINDS = {1: "view", 2: "active", 3: "committed"}
MAX_CONTAINERS = 10_000
_GO_EPOCH = 62_135_596_800  # seconds from year 1 to 1970 (Go's time.Time zero)


def go_time(data: bytes | None) -> str | None:
    """A Go ``time.MarshalBinary`` value (version 1 or 2) as RFC 3339 UTC."""
    if not data or data[0] not in (1, 2) or len(data) < 15:
        return None
    seconds = int.from_bytes(data[1:9], "big", signed=True) - _GO_EPOCH
    nanos = int.from_bytes(data[9:13], "big")
    try:
        when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def uvarint(data: bytes | None) -> int | None:
    value = shift = 0
    for b in (data or b"")[:10]:
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7
    return None


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value is not None else None


def _labels(bucket: Bucket | None) -> dict[str, str]:
    if bucket is None:
        return {}
    return {k.decode("utf-8", "replace"): (v.decode("utf-8", "replace")[:1000]
            if isinstance(v, bytes) else "") for k, v in bucket.items()}  # fmt: skip


def _snapshot_dirs(root: bytes, snapshotter: bytes) -> dict[bytes, tuple[int, str]]:
    """The snapshotter's key -> (ID, kind), from its own metadata.db."""
    path = os.path.join(root, TOP, b"io.containerd.snapshotter.v1." + snapshotter, b"metadata.db")
    try:
        snaps = open_bolt(path).root_bucket().bucket(b"v1")
        snaps = snaps.bucket(b"snapshots") if snaps else None
        if snaps is None:
            return {}
        found = {}
        for key, value in snaps.items():
            if isinstance(value, Bucket):
                sid = uvarint(value.value(b"id"))
                kind = (value.value(b"kind") or b"\0")[0]
                if sid is not None:
                    found[key] = (sid, KINDS.get(kind, str(kind)))
        return found
    except BoltError:
        return {}


def stored(root: bytes) -> tuple[list[Container], list[str]]:
    """Every container meta.db records, and the problems met reading it."""
    path = os.path.join(root, CONTAINERD_META)
    if not os.path.lexists(path):
        return [], []
    try:
        v1 = open_bolt(path).root_bucket().bucket(b"v1")
        return ([] if v1 is None else _containers(root, path, v1)), []
    except BoltError as e:
        return [], [f"{os.fsdecode(path)}: {e}"]


def _containers(root: bytes, path: bytes, v1: Bucket) -> list[Container]:
    found: list[Container] = []
    snapshot_ids: dict[bytes, dict[bytes, tuple[int, str]]] = {}
    for ns, nsb in v1.items():
        if not isinstance(nsb, Bucket):
            continue
        listed = nsb.bucket(b"containers")
        for cid, cb in listed.items() if listed else []:
            if not isinstance(cb, Bucket) or len(found) >= MAX_CONTAINERS:
                continue
            c = Container("containerd", cid.decode("ascii", "replace"), os.fsdecode(path))
            image = cb.value(b"image")
            runtime = cb.bucket(b"runtime")
            snapshotter, key = cb.value(b"snapshotter") or b"", cb.value(b"snapshotKey")
            c.info = {
                "namespace": ns.decode("ascii", "replace"), "image": _text(image),
                "runtime": _text(runtime.value(b"name")) if runtime else None,
                "created": go_time(cb.value(b"createdat")),
                "updated": go_time(cb.value(b"updatedat")),
                "labels": _labels(cb.bucket(b"labels")), "snapshotter": _text(snapshotter),
                "snapshot_key": _text(key), "image_digest": _image_digest(nsb, image),
            }  # fmt: skip
            snap = _bucket_at(nsb, b"snapshots", snapshotter, key or b"")
            backend = snap.value(b"name") if snap else None
            c.info["snapshot_parent"] = _text(snap.value(b"parent")) if snap else None
            if snapshotter not in snapshot_ids:
                snapshot_ids[snapshotter] = (
                    _snapshot_dirs(root, snapshotter) if snapshotter in SNAPSHOTTERS else {}
                )
            sid = snapshot_ids[snapshotter].get(backend or b"")
            if sid is None:
                c.problems.append("its snapshot is not in the snapshotter's metadata.db")
            else:
                c.info["snapshot_id"], c.info["snapshot_kind"] = sid
                base = os.path.join(root, TOP, b"io.containerd.snapshotter.v1." + snapshotter)
                layer = os.path.join(base, b"snapshots", str(sid[0]).encode())
                if sid[1] == "active":  # a committed snapshot is an image layer
                    sub = SNAPSHOTTERS[snapshotter]
                    c.rw_layer = os.path.join(layer, sub) if sub else layer
            found.append(c)
    return found


def _bucket_at(bucket: Bucket, *names: bytes) -> Bucket | None:
    b: Bucket | None = bucket
    for name in names:
        b = b.bucket(name) if b is not None else None
    return b


def _image_digest(ns: Bucket, image: bytes | None) -> str | None:
    target = _bucket_at(ns, b"images", image, b"target") if image else None
    return _text(target.value(b"digest")) if target else None


def merge(tasks: list[Container], recorded: list[Container]) -> list[Container]:
    """The running tasks (their OCI bundles) joined with meta.db's record of each, by
    namespace and ID; a recorded container with no task is stopped, and kept."""
    by_key = {(c.info.get("namespace"), c.id): c for c in recorded}
    out = []
    for task in tasks:
        rec = by_key.pop((task.info.get("namespace"), task.id), None)
        if rec is not None:
            task.info = {**rec.info, **task.info, "running": True}
            task.rw_layer = task.rw_layer or rec.rw_layer
            if task.rw_layer is not None:
                task.problems = [p for p in task.problems if p != UNMOUNTED]
            task.problems += rec.problems
        out.append(task)
    for rec in by_key.values():
        rec.info["running"] = False
        out.append(rec)
    return out
