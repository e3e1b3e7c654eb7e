"""Podman's own database (libpod): what ``podman ps -a`` and ``podman inspect`` answer
from, beyond containers-storage's ``containers.json`` (collectors/container_state.py).

Podman 4.8 and later keep it in SQLite, ``<graph root>/db.sql`` (the default since
Podman 5), in WAL mode: read with its ``-wal`` into memory (collectors/sqliteimage.py),
never opened in place. Tables ``ContainerConfig (ID, Name, PodID, JSON)`` and
``ContainerState (ID, State, ExitCode, JSON)``, the JSON being libpod's ContainerConfig
and ContainerState structures. What is kept of each container: its name, pod, image (ID,
name, and the name as typed), the command line that created it (with every ``-e``/
``--env`` value cut off: passwords are passed that way), creation, start and finish
times, state, PID, exit code, user, privileged, named volumes, the OCI spec's mounts and
process arguments, and its environment's variable names only. Its storage layer (the
writable layer's directory) comes from ``containers.json``, matched by ID. Before Podman
5 the default was BoltDB, ``libpod/bolt_state.db`` (collectors/bbolt.py): bucket ``ctr``,
a bucket per container with the same two JSON documents."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from .bbolt import BoltError, Bucket, open_bolt
from .redact import redact
from .sqliteimage import ImageError, open_image

DB = b"db.sql"
BOLT_STATE = b"libpod/bolt_state.db"
# libpod/define/containerstate.go: ContainerStatus
STATES = ("unknown", "configured", "created", "running", "stopped", "paused", "exited",
          "removing", "stopping")  # fmt: skip
MAX_ROWS = 10_000
_ENV_FLAGS = ("-e", "--env")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json(text: Any) -> dict[str, Any]:
    try:
        return _mapping(json.loads(text))
    except (TypeError, ValueError):
        return {}


def _name_only(assignment: str) -> str:
    name, sep, _ = assignment.partition("=")
    return name + sep


def create_command(argv: Any) -> list[str] | None:
    """The command line that created the container, with environment values removed
    (``-e DB_PASSWORD=x``, ``--env=K=V`` and ``-eK=V`` keep the name only) and any other
    likely secret redacted (collectors/redact.py: ``--health-cmd "mysql -pX"``)."""
    if not isinstance(argv, list):
        return None
    out: list[str] = []
    after_flag = False
    for arg in map(str, argv):
        if after_flag:
            arg = _name_only(arg)
        elif arg.startswith(("--env=", "-e=")):
            flag, _, rest = arg.partition("=")
            arg = f"{flag}={_name_only(rest)}"
        elif arg.startswith("-e") and not arg.startswith("--") and "=" in arg:
            arg = "-e" + _name_only(arg[2:])
        after_flag = not after_flag and arg in _ENV_FLAGS
        out.append(redact(arg)[0])
    return out


def containers(store: bytes) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(container ID -> what libpod records of it, problems) for the store at ``store``;
    an absent database is ({}, [])."""
    path = os.path.join(store, DB)
    if not os.path.lexists(path):
        return _bolt_state(os.path.join(store, BOLT_STATE))
    try:
        conn, _ = open_image(path)
    except ImageError as e:
        return {}, [f"{os.fsdecode(path)}: {e}"]
    try:
        rows = conn.execute(
            "SELECT c.ID, c.Name, c.PodID, c.JSON, s.State, s.ExitCode, s.JSON FROM"
            " ContainerConfig c LEFT JOIN ContainerState s ON s.ID = c.ID LIMIT ?",
            (MAX_ROWS,),
        ).fetchall()
    except sqlite3.Error as e:
        return {}, [f"{os.fsdecode(path)}: not Podman's schema: {e}"]
    finally:
        conn.close()
    return {str(r[0]): _one(*r[1:]) for r in rows}, []


def _bolt_state(path: bytes) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The same from the BoltDB state of Podman before 5 (``libpod/bolt_state.db``):
    bucket ``ctr``, one bucket a container with its ``config`` and ``state`` JSON."""
    if not os.path.lexists(path):
        return {}, []
    try:
        top = open_bolt(path).root_bucket().bucket(b"ctr")
        found: dict[str, dict[str, Any]] = {}
        for cid, b in top.items() if top else []:
            if isinstance(b, Bucket) and len(found) < MAX_ROWS:
                config, state = b.value(b"config"), _json(b.value(b"state"))
                name = _json(config).get("name")
                found[cid.decode("ascii", "replace")] = _one(
                    name, _json(config).get("pod"), config, state.get("state"),
                    state.get("exitCode"), b.value(b"state"),
                )  # fmt: skip
        return found, []
    except BoltError as e:
        return {}, [f"{os.fsdecode(path)}: {e}"]


def _one(
    name: Any, pod: Any, config_json: Any, state: Any, exit_code: Any, state_json: Any
) -> dict[str, Any]:
    config, st = _json(config_json), _json(state_json)
    spec = _mapping(config.get("spec"))
    process = _mapping(spec.get("process"))
    env = process.get("env")
    return {
        "name": name, "pod": pod, "image_id": config.get("rootfsImageID"),
        "image": config.get("rootfsImageName"), "image_as_typed": config.get("RawImageName"),
        "create_command": create_command(config.get("CreateCommand")),
        "created": config.get("createdTime"), "started": st.get("startedTime"),
        "finished": st.get("finishedTime"),
        "state": STATES[state] if isinstance(state, int) and 0 <= state < len(STATES) else state,
        "pid": st.get("pid"), "exit_code": exit_code, "user": config.get("user"),
        "privileged": config.get("privileged"), "command": process.get("args"),
        "env_names": [str(e).split("=", 1)[0] for e in env] if isinstance(env, list) else [],
        "named_volumes": [
            {k: v.get(k) for k in ("volumeName", "dest")}
            for v in config.get("namedVolumes") or [] if isinstance(v, dict)
        ],
        "mounts": [
            {k: m.get(k) for k in ("type", "source", "destination")}
            for m in spec.get("mounts") or [] if isinstance(m, dict)
        ],
    }  # fmt: skip
