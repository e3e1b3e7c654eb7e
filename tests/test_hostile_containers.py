"""Container state written by whoever controls it: a rootless Podman store lives in a
user's home, so any user can plant one. On a host planted in a private mount namespace
(tests/hostns.py), beside the Docker container of tests/test_containers.py, a user's
store holds an image ID that is a list, a container whose ``mounts`` is a number, a
``config.json`` nested deeper than Python's recursion limit, one nested just shallower
(it loads, then could not be written back), and container IDs that climb out of the
store (``../..``) or are absolute. None of it may cost the Docker container's record,
and each odd container is a ``problem``, not a crash. And a Docker container whose
storage driver is a path (``/etc``) must not have that path listed as its layer."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import journal_records
from hostns import run_on_planted_host
from test_containers import CID
from test_containers import SETUP as DOCKER

STORE = "/home/mallory/.local/share/containers/storage"
CONTAINERS = [
    {"id": "listimage", "image": ["not", "a", "key"], "layer": "l1"},
    {"id": "numbermounts", "image": "img1", "layer": "l1"},
    {"id": "toodeep", "image": "img1"},
    {"id": "almost", "image": "img1"},
    {"id": "../../../../../../../../etc/escape", "image": "img1"},
    {"id": "/etc/escape", "image": "img1"},
]
IMAGES = [{"id": ["unhashable"]}, {"id": "img1", "names": ["ok"]}]
SPECS = {
    "listimage": {"process": {"args": ["sh"]}},
    "numbermounts": {"process": {"args": ["sh"]}, "mounts": 5},
    "toodeep": "$(head -c 99999 /dev/zero | tr '\\0' '[')$(head -c 99999 /dev/zero | tr '\\0' ']')",
    "almost": '{"process": {"args": ' + "[" * 960 + "]" * 960 + "}}",
}
CID2 = "e5ca" * 16  # a Docker container whose driver is a path: "/etc"
SETUP = (
    DOCKER
    + f"""
mkdir -p $D/containers/{CID2} /etc/layerdb/mounts/{CID2} /etc/x/diff
echo '{{"Name": "/odd", "Driver": "/etc"}}' > $D/containers/{CID2}/config.v2.json
printf x > /etc/layerdb/mounts/{CID2}/mount-id
cp /bin/true /etc/x/diff/planted
mount -t tmpfs home /home
S={STORE}
mkdir -p $S/overlay-containers $S/overlay-images $S/overlay/l1/diff /etc/escape/userdata
echo '{{"process": {{"args": ["planted"]}}}}' > /etc/escape/userdata/config.json
cat > $S/overlay-containers/containers.json <<'JSON'
{json.dumps(CONTAINERS)}
JSON
cat > $S/overlay-images/images.json <<'JSON'
{json.dumps(IMAGES)}
JSON
"""
    + "".join(
        f"mkdir -p $S/overlay-containers/{cid}/userdata\n"
        f"cat > $S/overlay-containers/{cid}/userdata/config.json <<JSON\n"
        f"{spec if isinstance(spec, str) else json.dumps(spec)}\nJSON\n"
        for cid, spec in SPECS.items()
    )
)


def test_a_users_hostile_podman_store_costs_nothing(tmp_path: Path) -> None:
    summary, evidence = run_on_planted_host(tmp_path, SETUP, "--only", "containers")
    errors = [r for r in journal_records(evidence) if r.get("type") == "error"]
    assert not errors, errors
    listed = json.loads((evidence / "artifacts/containers/containers.json").read_bytes())
    docker = {c["id"]: c for c in listed if c["engine"] == "docker"}
    assert docker[CID]["image"] == "nginx:1.25" and docker[CID]["writable_layer"]
    assert docker[CID2]["name"] == "/odd" and docker[CID2]["writable_layer"] is None
    assert "not a directory name" in docker[CID2]["problems"][0]
    changes = (evidence / "artifacts/containers/changes.jsonl").read_text()
    assert CID in changes and CID2 not in changes and "planted" not in changes
    podman = {c["id"]: c for c in listed if c["engine"] == "podman"}
    assert set(podman) == {"listimage", "numbermounts", "toodeep", "almost"}
    assert podman["listimage"]["image"] is None and podman["listimage"]["command"] == ["sh"]
    assert podman["numbermounts"]["mounts"] == []
    assert podman["toodeep"]["problems"] and podman["almost"]["problems"]
    assert "planted" not in json.dumps(listed)  # nothing read from outside the store
    assert summary["status"] == "complete", summary
