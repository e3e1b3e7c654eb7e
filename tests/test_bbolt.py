"""The bbolt reader against files bbolt itself wrote (tests/bbolt_fixture.go, built with
Debian's golang-go and golang-github-coreos-bbolt-dev): every key and value of
containerd's meta.db and snapshotter metadata.db as bbolt's cursors list them, branch
pages, overflow pages and inline buckets included; damaged and hostile files refused
with a reason; then the containers collector on a host whose containerd holds a stopped
container, its writable layer found through the two databases."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import journal_records
from hostns import run_on_planted_host

from collectors import bbolt, containerdmeta, libpod

GOPATH = "/usr/share/gocode"
SOURCE = Path(__file__).with_name("bbolt_fixture.go")
CD = "/var/lib/containerd"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(meta.db, metadata.db, bbolt's own dump of each, split by '--')."""
    if not shutil.which("go") or not os.path.isdir(f"{GOPATH}/src/go.etcd.io/bbolt"):
        pytest.skip("needs golang-go and golang-github-coreos-bbolt-dev (tests/run.sh)")
    d = tmp_path_factory.mktemp("bbolt")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(d / "cache")}
    subprocess.run(["go", "build", "-o", d / "fixture", SOURCE], check=True, env=env)
    (d / "podman/libpod").mkdir(parents=True)
    dump = subprocess.run(
        [d / "fixture", d / "meta.db", d / "metadata.db", d / "podman/libpod/bolt_state.db"],
        check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    return d / "meta.db", d / "metadata.db", dump.split("--\n")


def _ours(path: Path) -> list[dict]:
    db = bbolt.open_bolt(os.fsencode(path))
    return [
        {"path": [k.hex() for k in keys], "value": None if v is None else v.hex()}
        for keys, v in bbolt.walk(db.root_bucket())
    ]


def test_every_key_as_bbolt_lists_it(written: tuple[Path, Path, list[str]]) -> None:
    meta, snapshots, dumps = written
    for path, dump in zip((meta, snapshots), dumps, strict=True):
        theirs = [json.loads(line) for line in dump.splitlines()]
        assert _ours(path) == theirs
    assert len(theirs) > 5 and len(_ours(meta)) > 4000  # 400 containers: branch pages
    big = [r for r in _ours(meta) if r["path"][-1] == b"big".hex()]
    assert big and len(bytes.fromhex(big[0]["value"])) == 20000  # overflow pages


def test_containerd_fields_decoded(written: tuple[Path, Path, list[str]]) -> None:
    meta, snapshots, _ = written
    root = meta.parent / "host"
    top = root / CD.lstrip("/")
    (top / "io.containerd.metadata.v1.bolt").mkdir(parents=True)
    (top / "io.containerd.snapshotter.v1.overlayfs").mkdir()
    shutil.copy(meta, top / "io.containerd.metadata.v1.bolt/meta.db")
    shutil.copy(snapshots, top / "io.containerd.snapshotter.v1.overlayfs/metadata.db")
    found, problems = containerdmeta.stored(os.fsencode(root))
    assert problems == [] and len(found) == 401
    web = next(c for c in found if c.id == "web1")
    assert (
        web.info["namespace"] == "default" and web.info["image"] == "docker.io/library/nginx:1.25"
    )
    assert web.info["created"] == "2026-11-30T22:15:00.123456789Z"
    assert web.info["runtime"] == "io.containerd.runc.v2"
    assert web.info["image_digest"] == "sha256:bbbb"
    assert (web.info["snapshot_id"], web.info["snapshot_kind"]) == (7, "active")
    assert web.rw_layer == os.fsencode(
        top / "io.containerd.snapshotter.v1.overlayfs/snapshots/7/fs"
    )
    pod = next(c for c in found if c.info["namespace"] == "k8s.io")
    assert pod.rw_layer is None and pod.problems  # not in the snapshotter's database


def test_podman_bolt_state(written: tuple[Path, Path, list[str]]) -> None:
    """Podman before 5 kept libpod's state in BoltDB: the same record as from db.sql."""
    store = written[0].parent / "podman"
    found, problems = libpod.containers(os.fsencode(store))
    assert problems == [] and set(found) == {"b0a7"}
    cache = found["b0a7"]
    assert cache["name"] == "cache" and cache["image"] == "docker.io/library/redis:7"
    assert cache["state"] == "exited" and cache["exit_code"] == 137
    assert cache["create_command"] == ["podman", "run", "--env=REDIS_PASSWORD=", "redis:7"]
    assert cache["env_names"] == ["REDIS_PASSWORD"] and "PLANTED" not in json.dumps(cache)


def test_damaged_and_hostile_files_are_refused(written: tuple[Path, Path, list[str]]) -> None:
    meta = written[0].read_bytes()
    with pytest.raises(bbolt.BoltError, match="no valid meta"):
        bbolt.BoltFile(b"\0" * 8192)
    with pytest.raises(bbolt.BoltError, match="no valid meta"):
        bbolt.BoltFile(meta[:60])  # cut inside the meta
    cut = bbolt.BoltFile(meta[: len(meta) // 4])  # cut short: the walk stops with a reason
    with pytest.raises(bbolt.BoltError, match="outside the file|past the end"):
        list(bbolt.walk(cut.root_bucket()))
    # A branch page whose first child is itself: a loop, refused, not followed forever.
    db = bbolt.BoltFile(meta)
    pages = range(2, len(meta) // db.page_size)
    page = next(p for p in pages if meta[p * db.page_size + 8] & bbolt.BRANCH)
    looped = bytearray(meta)
    struct.pack_into("<Q", looped, page * db.page_size + 16 + 8, page)
    with pytest.raises(bbolt.BoltError, match="twice"):
        list(bbolt.walk(bbolt.BoltFile(bytes(looped)).root_bucket()))
    # A meta whose checksum fails is not used: the other one, the transaction before, is.
    newest = max((0, 1), key=lambda i: struct.unpack_from("<Q", meta, i * 4096 + 16 + 48)[0])
    for index, same in ((1 - newest, True), (newest, False)):
        flipped = bytearray(meta)
        flipped[index * 4096 + 16 + 40] ^= 0xFF  # a byte of the meta's high-water mark
        assert (_ours_bytes(bytes(flipped)) == _ours_bytes(meta)) is same
    assert bbolt.BoltFile(bytes(flipped)).txid == db.txid - 1


def _ours_bytes(data: bytes) -> list[tuple[tuple[bytes, ...], bytes | None]]:
    return list(bbolt.walk(bbolt.BoltFile(data).root_bucket()))


def test_a_stopped_containerd_container_on_a_planted_host(
    written: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    meta, snapshots, _ = written
    snap = f"{CD}/io.containerd.snapshotter.v1.overlayfs"
    setup = f"""
mkdir -p {CD} && mount -t tmpfs containerd {CD}
mkdir -p {CD}/io.containerd.metadata.v1.bolt {snap}/snapshots/7/fs/usr/bin
cp /mnt/stage/{meta.name} {CD}/io.containerd.metadata.v1.bolt/meta.db
cp /mnt/stage/{snapshots.name} {snap}/metadata.db
cp /bin/true {snap}/snapshots/7/fs/usr/bin/.kdevtmpfs
"""
    summary, evidence = run_on_planted_host(
        tmp_path, setup, "--only", "containers", stage=meta.parent
    )
    assert summary["status"] == "complete", summary
    listed = json.loads((evidence / "artifacts/containers/containers.json").read_bytes())
    web = next(c for c in listed if c["id"] == "web1")
    assert web["engine"] == "containerd" and web["running"] is False
    assert web["writable_layer"] == f"{snap}/snapshots/7/fs"
    assert len(listed) == 401  # every container meta.db records, running or not
    records = journal_records(evidence)
    finding = next(r for r in records if r.get("rule") == "container-layer-executable")
    assert "/usr/bin/.kdevtmpfs" in finding["executables"]
    secret = next(r for r in records if r.get("secret") and "meta.db" in r["source"]["path"])
    assert secret["sha256"] == hashlib.sha256(meta.read_bytes()).hexdigest()
    assert (evidence / "artifacts/containers/containerd" / snap.split("/")[-1] / "metadata.db"
            ).read_bytes() == snapshots.read_bytes()  # fmt: skip
    for f in evidence.rglob("*"):  # the spec's environment value is nowhere
        assert not f.is_file() or b"PLANTED-SPEC-SECRET" not in f.read_bytes(), f
