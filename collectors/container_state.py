"""What Docker, Podman and containerd keep on disk about their containers, read from their
state directories as files (never through their daemons): one ``Container`` each, with
the directory of its writable layer for the caller to list.

- Docker (``/var/lib/docker``): ``containers/<id>/config.v2.json`` and ``hostconfig.json``;
  the writable layer from ``image/<driver>/layerdb/mounts/<id>/mount-id`` (overlay2:
  ``overlay2/<mount-id>/diff``); the image's layers from ``image/<driver>/imagedb`` and
  ``layerdb/sha256/<chain-id>/{diff,parent,cache-id}``.
- Podman (``/var/lib/containers/storage`` and each user's
  ``~/.local/share/containers/storage``): ``overlay-containers/containers.json``, each
  container's ``userdata/config.json`` (the OCI spec), ``overlay-images/images.json``,
  ``overlay-layers/layers.json``; the writable layer is ``overlay/<layer>/diff``.
- containerd (``/run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>``): the
  running tasks' OCI bundles (``config.json``); every container, running or not, and its
  snapshot from the BoltDB ``io.containerd.metadata.v1.bolt/meta.db``
  (collectors/containerdmeta.py).
- Podman's own database (``db.sql``: names, state, create command, times) is joined to
  ``containers.json`` by ID (collectors/libpod.py).

Environment values are secrets (passwords in ``-e``): only their names are kept. Every
file is read bounded (``MAX_JSON``), never through a symlink; a file that does not parse
is a ``problem`` of the container, not a failure."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from . import libpod
from .readfile import read_regular

MAX_JSON = 16 * 1024 * 1024
MAX_DEPTH = 32  # of a value kept from a state file; deeper ones are cut (see _shallow)
DOCKER = b"var/lib/docker"
PODMAN = b"var/lib/containers/storage"
PODMAN_USER = b".local/share/containers/storage"
CONTAINERD_TASKS = b"run/containerd/io.containerd.runtime.v2.task"
CONTAINERD_META = b"var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db"
UNMOUNTED = "the task's rootfs is not mounted: its writable layer is not known from the mounts"


@dataclass
class Container:
    engine: str
    id: str
    state_dir: str
    info: dict[str, Any] = field(default_factory=dict)
    rw_layer: bytes | None = None  # the directory holding the writable layer's files
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine, "id": self.id, "state_dir": self.state_dir, **self.info,
            "writable_layer": os.fsdecode(self.rw_layer) if self.rw_layer else None,
            "problems": self.problems,
        }  # fmt: skip


def _json(path: bytes, problems: list[str]) -> Any:
    """The parsed file, or None. A rootless Podman store is in a user's home: anyone can
    write one nested past the recursion limit (``RecursionError``), or just short of it
    (it loads, then ``containers.json`` could not be written): cut at ``MAX_DEPTH``."""
    try:
        value = json.loads(read_regular(os.fsdecode(path), MAX_JSON, follow=False))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:
        problems.append(f"{os.fsdecode(path)}: {str(e)[:200]}")
        return None
    cut: list[int] = []
    value = _shallow(value, MAX_DEPTH, cut)
    if cut:
        problems.append(f"{os.fsdecode(path)}: nested deeper than {MAX_DEPTH}: cut there")
    return value


def _shallow(value: Any, depth: int, cut: list[int]) -> Any:
    if not isinstance(value, dict | list):
        return value
    if depth == 0:
        cut.append(1)
        return f"(nested deeper than {MAX_DEPTH} levels)"
    if isinstance(value, list):
        return [_shallow(v, depth - 1, cut) for v in value]
    return {k: _shallow(v, depth - 1, cut) for k, v in value.items()}


def _text(path: bytes) -> str | None:
    try:
        data = read_regular(os.fsdecode(path), 4096, follow=False)
        return data.decode("ascii", "replace").strip()
    except OSError:
        return None


def _listdir(path: bytes) -> list[bytes]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _env_names(env: Any) -> list[str]:
    return [str(e).split("=", 1)[0] for e in env] if isinstance(env, list) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _name(value: Any) -> TypeGuard[str]:
    """Is ``value`` usable as one path component of a state directory? An ID or driver
    such as ``../../etc`` or ``/etc`` would take the reader out of it."""
    return isinstance(value, str) and bool(value) and "/" not in value and value not in (".", "..")


def docker(root: bytes) -> list[Container]:
    top = os.path.join(root, DOCKER)
    found = []
    for cid in _listdir(os.path.join(top, b"containers")):
        c = Container("docker", cid.decode("ascii", "replace"), os.fsdecode(top))
        d = os.path.join(top, b"containers", cid)
        config = _mapping(_json(os.path.join(d, b"config.v2.json"), c.problems))
        host = _mapping(_json(os.path.join(d, b"hostconfig.json"), c.problems))
        cfg, state = _mapping(config.get("Config")), _mapping(config.get("State"))
        driver = str(config.get("Driver") or "overlay2")
        c.info = {
            "name": config.get("Name"), "image": cfg.get("Image"), "image_id": config.get("Image"),
            "created": config.get("Created"), "driver": driver,
            "command": {"entrypoint": cfg.get("Entrypoint"), "cmd": cfg.get("Cmd")},
            "user": cfg.get("User"), "env_names": _env_names(cfg.get("Env")),
            "state": {k: state.get(k) for k in ("Running", "Pid", "StartedAt", "FinishedAt",
                                                 "ExitCode")},
            "mounts": [
                {k: m.get(k) for k in ("Type", "Source", "Destination", "RW", "Name")}
                for m in _mapping(config.get("MountPoints")).values() if isinstance(m, dict)
            ],
            "host_config": {k: host.get(k) for k in (
                "Privileged", "Binds", "CapAdd", "NetworkMode", "PidMode", "IpcMode",
                "PortBindings", "SecurityOpt", "Devices", "RestartPolicy")},
        }  # fmt: skip
        if not _name(driver):
            c.problems.append(f"driver {driver[:100]!r} is not a directory name: not followed")
            found.append(c)
            continue
        layerdb = os.path.join(top, b"image", driver.encode(), b"layerdb")
        mount_id = _text(os.path.join(layerdb, b"mounts", cid, b"mount-id"))
        if _name(mount_id):
            c.info["layer_mount_id"] = mount_id
            c.rw_layer = os.path.join(top, driver.encode(), mount_id.encode(), b"diff")
        else:
            c.problems.append("no layerdb mount-id: the writable layer is not known")
        c.info["image_layers"] = _docker_layers(
            layerdb, _text(os.path.join(layerdb, b"mounts", cid, b"parent"))
        )
        found.append(c)
    return found


def _docker_layers(layerdb: bytes, chain: str | None) -> list[dict[str, Any]]:
    """The image's layers, top first, following each layer's ``parent`` chain ID."""
    layers: list[dict[str, Any]] = []
    while chain and chain.startswith("sha256:") and len(layers) < 512:
        d = os.path.join(layerdb, b"sha256", chain[7:].encode())
        layers.append({
            "chain_id": chain, "diff_id": _text(os.path.join(d, b"diff")),
            "cache_id": _text(os.path.join(d, b"cache-id")),
        })  # fmt: skip
        chain = _text(os.path.join(d, b"parent"))
    return layers


def podman_stores(root: bytes) -> list[bytes]:
    stores = [os.path.join(root, PODMAN)]
    home = os.path.join(root, b"home")
    stores += [os.path.join(home, u, PODMAN_USER) for u in _listdir(home)]
    stores.append(os.path.join(root, b"root", PODMAN_USER))
    return [s for s in stores if os.path.isdir(s)]


def podman(store: bytes) -> list[Container]:
    problems: list[str] = []
    listed = _json(os.path.join(store, b"overlay-containers/containers.json"), problems)
    images = _json(os.path.join(store, b"overlay-images/images.json"), problems) or []
    names = {i["id"]: i.get("names") for i in _dicts(images) if isinstance(i.get("id"), str)}
    found = []
    for entry in _dicts(listed):
        if not _name(entry.get("id")):
            continue
        c = Container("podman", entry["id"], os.fsdecode(store), problems=list(problems))
        userdata = os.path.join(store, b"overlay-containers", entry["id"].encode(), b"userdata")
        spec = _mapping(_json(os.path.join(userdata, b"config.json"), c.problems))
        process = _mapping(spec.get("process"))
        c.info = {
            "name": entry.get("names"), "image_id": entry.get("image"),
            "image": names.get(str(entry.get("image"))), "created": entry.get("created"),
            "command": process.get("args"), "env_names": _env_names(process.get("env")),
            "mounts": [
                {k: m.get(k) for k in ("type", "source", "destination", "options")}
                for m in _dicts(spec.get("mounts"))
            ],
            "layer": entry.get("layer"),
        }  # fmt: skip
        layer = entry.get("layer")
        if _name(layer):
            c.rw_layer = os.path.join(store, b"overlay", layer.encode(), b"diff")
        found.append(c)
    return _with_libpod(store, found)


def _with_libpod(store: bytes, found: list[Container]) -> list[Container]:
    """Each container joined with libpod's record of it (``info["libpod"]``); one in the
    database only (its storage removed, or a database of another store) is kept too."""
    recorded, problems = libpod.containers(store)
    for c in found:
        c.info["libpod"] = recorded.pop(c.id, None)
        c.problems += problems
    for cid, info in recorded.items():
        c = Container("podman", cid, os.fsdecode(store), {"name": info.get("name"), "libpod": info})
        c.problems.append("in libpod's database only: containers-storage has no layer for it")
        found.append(c)
    return found


def upper_dirs(mounts: list[dict[str, Any]]) -> dict[str, bytes]:
    """Mount point -> ``upperdir`` of each overlay mount (``/proc/self/mountinfo``): a
    running containerd task's rootfs names its writable snapshot there."""
    found = {}
    for m in mounts:
        if m.get("fstype") == "overlay":
            for option in str(m.get("super_options", "")).split(","):
                if option.startswith("upperdir="):
                    found[str(m["mountpoint"])] = os.fsencode(option[9:])
    return found


def containerd(root: bytes, uppers: dict[str, bytes]) -> list[Container]:
    tasks = os.path.join(root, CONTAINERD_TASKS)
    found = []
    for ns in _listdir(tasks):
        for cid in _listdir(os.path.join(tasks, ns)):
            bundle = os.path.join(tasks, ns, cid)
            c = Container("containerd", cid.decode("ascii", "replace"), os.fsdecode(bundle))
            spec = _mapping(_json(os.path.join(bundle, b"config.json"), c.problems))
            process = _mapping(spec.get("process"))
            c.info = {
                "namespace": ns.decode("ascii", "replace"), "command": process.get("args"),
                "env_names": _env_names(process.get("env")),
                "hostname": spec.get("hostname"),
                "mounts": [
                    {k: m.get(k) for k in ("type", "source", "destination")}
                    for m in _dicts(spec.get("mounts"))
                ],
            }  # fmt: skip
            c.rw_layer = uppers.get(os.fsdecode(os.path.join(bundle, b"rootfs")))
            if c.rw_layer is None:
                c.problems.append(UNMOUNTED)
            found.append(c)
    return found
