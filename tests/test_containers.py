"""The containers collector on a Docker state directory laid out as Docker (overlay2)
writes it, planted by the test over /var/lib/docker in a private mount namespace (never
the machine's own): the container's configuration and host settings, its image layers,
the writable layer's changed, added and deleted files with hashes, the finding for the
executable planted there, and no environment value anywhere in the evidence."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from conftest import journal_records
from hostns import run_on_planted_host

from collectors import container_state
from collectors.context import CollectContext

CID = "4f1c" * 16
MID = "9a8b" * 16
CHAIN = "c0de" * 16
CONFIG = {
    "ID": CID, "Name": "/web", "Image": "sha256:" + "1a2b" * 16, "Driver": "overlay2",
    "Created": "2026-11-30T10:00:00Z",
    "Config": {"Image": "nginx:1.25", "Cmd": ["nginx", "-g", "daemon off;"],
               "Env": ["MYSQL_PASSWORD=hunter2-secret", "PATH=/usr/bin"], "User": ""},
    "State": {"Running": True, "Pid": 4242, "StartedAt": "2026-11-30T10:00:01Z"},
    "MountPoints": {"/data": {"Type": "bind", "Source": "/srv/data", "Destination": "/data",
                              "RW": True}},
}  # fmt: skip
HOST = {"Privileged": True, "Binds": ["/:/host"], "NetworkMode": "host"}
SETUP = f"""
D=/var/lib/docker
mkdir -p $D && mount -t tmpfs docker $D  # a whiteout (0/0 device) cannot be made on overlay
mkdir -p $D/containers/{CID} $D/image/overlay2/layerdb/mounts/{CID}
mkdir -p $D/image/overlay2/layerdb/sha256/{CHAIN} $D/overlay2/{MID}/diff/usr/local/bin
mkdir -p $D/overlay2/{MID}/diff/etc $D/overlay2/{MID}/work
cat > $D/containers/{CID}/config.v2.json <<'JSON'
{json.dumps(CONFIG)}
JSON
cat > $D/containers/{CID}/hostconfig.json <<'JSON'
{json.dumps(HOST)}
JSON
printf '%s' {MID} > $D/image/overlay2/layerdb/mounts/{CID}/mount-id
printf 'sha256:%s' {CHAIN} > $D/image/overlay2/layerdb/mounts/{CID}/parent
printf 'sha256:%s' {"d1ff" * 16} > $D/image/overlay2/layerdb/sha256/{CHAIN}/diff
printf '%s' {"cace" * 16} > $D/image/overlay2/layerdb/sha256/{CHAIN}/cache-id
cp /bin/true $D/overlay2/{MID}/diff/usr/local/bin/kworker
echo '127.0.0.1 evil.example' > $D/overlay2/{MID}/diff/etc/hosts
mknod $D/overlay2/{MID}/diff/etc/motd c 0 0
"""


def test_docker_state_and_writable_layer(tmp_path: Path) -> None:
    summary, evidence = run_on_planted_host(tmp_path, SETUP, "--only", "containers")
    assert summary["status"] == "complete", summary
    listed = json.loads((evidence / "artifacts/containers/containers.json").read_bytes())
    (c,) = [x for x in listed if x["engine"] == "docker"]
    assert (c["id"], c["name"], c["image"]) == (CID, "/web", "nginx:1.25")
    assert c["env_names"] == ["MYSQL_PASSWORD", "PATH"]
    assert c["host_config"]["Privileged"] is True and c["host_config"]["Binds"] == ["/:/host"]
    assert c["mounts"] == [{"Type": "bind", "Source": "/srv/data", "Destination": "/data",
                            "RW": True, "Name": None}]  # fmt: skip
    assert c["image_layers"] == [{"chain_id": f"sha256:{CHAIN}", "diff_id": "sha256:" + "d1ff" * 16,
                                  "cache_id": "cace" * 16}]  # fmt: skip
    assert c["writable_layer"] == f"/var/lib/docker/overlay2/{MID}/diff" and c["problems"] == []
    changes = {
        r["path"]: r
        for r in map(
            json.loads, (evidence / "artifacts/containers/changes.jsonl").read_text().splitlines()
        )
    }
    kworker = changes["/usr/local/bin/kworker"]
    assert kworker["sha256"] == hashlib.sha256(Path("/bin/true").read_bytes()).hexdigest()
    assert kworker["container"] == CID and kworker["change"] == "added-or-changed"
    assert changes["/etc/motd"]["change"] == "deleted"
    assert (
        changes["/etc/hosts"]["sha256"] == hashlib.sha256(b"127.0.0.1 evil.example\n").hexdigest()
    )
    findings = [r for r in journal_records(evidence) if r.get("event") == "finding"]
    (f,) = [r for r in findings if r["rule"] == "container-layer-executable"]
    assert f["executables"] == ["/usr/local/bin/kworker"] and f["why"]
    for path in evidence.rglob("*"):  # the environment's values are secrets: never stored
        if path.is_file():
            assert b"hunter2-secret" not in path.read_bytes(), path


def test_podman_store(tmp_path: Path) -> None:
    store = tmp_path / "storage"
    (store / "overlay-containers/abc/userdata").mkdir(parents=True)
    (store / "overlay-images").mkdir()
    (store / "overlay/rwlayer/diff").mkdir(parents=True)
    (store / "overlay-containers/containers.json").write_text(json.dumps(
        [{"id": "abc", "names": ["db"], "image": "img1", "layer": "rwlayer"}]
    ))  # fmt: skip
    (store / "overlay-images/images.json").write_text(json.dumps([{"id": "img1", "names": ["pg"]}]))
    spec = {"process": {"args": ["postgres"], "env": ["PGPASSWORD=x"]}, "mounts": []}
    (store / "overlay-containers/abc/userdata/config.json").write_text(json.dumps(spec))
    (c,) = container_state.podman(os.fsencode(store))
    assert c.info["image"] == ["pg"] and c.info["env_names"] == ["PGPASSWORD"]
    assert c.rw_layer == os.fsencode(store / "overlay/rwlayer/diff")
    assert "x" not in json.dumps(c.to_dict()["env_names"])


def test_docker_api_only_when_state_is_not_on_disk(ctx: CollectContext, tmp_path: Path) -> None:
    """A Docker socket with no /var/lib/docker (a data root elsewhere): the API is asked
    once for the container list, and the request is journaled as an action."""
    import socket
    import threading

    from collectors.containers import ContainersCollector

    root = tmp_path / "host"
    (root / "run").mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "run/docker.sock"))
    server.listen(1)
    asked: list[bytes] = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            asked.append(conn.recv(4096))
            conn.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[{"Id":"abc"}]')

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    collector = ContainersCollector()
    collector.root = os.fsencode(root)
    collector.collect(ctx)
    thread.join(5)
    server.close()
    assert asked and asked[0].startswith(b"GET /containers/json?all=1 ")
    (action,) = [r for r in journal_records(ctx.root) if r.get("action") == "daemon-api"]
    assert action["error"] is None and action["socket"].endswith("run/docker.sock")
    assert (
        ctx.root / "artifacts/containers/docker-api-containers.json"
    ).read_bytes() == b'[{"Id":"abc"}]'
