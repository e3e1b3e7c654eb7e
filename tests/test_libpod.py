"""Podman's libpod database (``db.sql``, SQLite in WAL mode as Podman 5 keeps it) read
with its write-ahead log into memory: the rows only the WAL holds are seen, a torn last
frame is not applied, the store is left byte for byte as it was (no ``-shm``, no
checkpoint), and each container's record is joined to containers-storage's, environment
values cut from its create command."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

from collectors import container_state, sqliteimage

# The two tables read, with Podman's column names (libpod/sqlite_state_internal.go).
SCHEMA = """
CREATE TABLE ContainerConfig(ID TEXT PRIMARY KEY NOT NULL, Name TEXT UNIQUE NOT NULL,
                             PodID TEXT, JSON TEXT NOT NULL);
CREATE TABLE ContainerState(ID TEXT PRIMARY KEY NOT NULL, State INTEGER NOT NULL,
                            ExitCode INTEGER, JSON TEXT NOT NULL);
"""
CONFIG = {
    "id": "abc", "name": "db", "rootfsImageID": "img1", "rootfsImageName": "docker.io/pg:16",
    "RawImageName": "pg:16", "createdTime": "2026-11-30T10:00:00Z", "user": "postgres",
    "CreateCommand": ["podman", "run", "-d", "-e", "POSTGRES_PASSWORD=PLANTED-ENV", "--name",
                      "db", "pg:16"],
    "spec": {"process": {"args": ["postgres"], "env": ["POSTGRES_PASSWORD=PLANTED-ENV"]},
             "mounts": [{"type": "bind", "source": "/srv/pg", "destination": "/var/lib/pg"}]},
    "namedVolumes": [{"volumeName": "pgdata", "dest": "/data"}],
}  # fmt: skip
STATE = {"state": 3, "pid": 4242, "startedTime": "2026-11-30T10:00:01Z"}


def _store(tmp_path: Path) -> tuple[Path, sqlite3.Connection]:
    """A Podman store whose db.sql has one container checkpointed into the file and one
    only in the -wal (the writer still open, as a running Podman keeps it)."""
    store = tmp_path / "storage"
    (store / "overlay-containers").mkdir(parents=True)
    (store / "overlay-images").mkdir()
    (store / "overlay-containers/containers.json").write_text(
        json.dumps([{"id": "abc", "names": ["db"], "image": "img1", "layer": "rwlayer"}])
    )
    writer = sqlite3.connect(store / "db.sql")
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.executescript(SCHEMA)
    writer.execute("INSERT INTO ContainerConfig VALUES ('old', 'old', NULL, '{}')")
    writer.execute("INSERT INTO ContainerState VALUES ('old', 6, 0, '{}')")
    writer.commit()
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writer.execute(
        "INSERT INTO ContainerConfig VALUES ('abc', 'db', NULL, ?)", (json.dumps(CONFIG),)
    )
    writer.execute("INSERT INTO ContainerState VALUES ('abc', 3, NULL, ?)", (json.dumps(STATE),))
    writer.commit()
    return store, writer


def _snapshot(store: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in store.iterdir() if p.is_file()
    }


def test_libpod_rows_joined_wal_included_store_untouched(tmp_path: Path) -> None:
    store, writer = _store(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)  # as a crashed or running host leaves it: -wal not merged
    writer.close()
    assert (copy / "db.sql-wal").stat().st_size > 0
    before = _snapshot(copy)
    found = {c.id: c for c in container_state.podman(os.fsencode(copy))}
    assert _snapshot(copy) == before  # not a byte written, no -shm created
    db = found["abc"].info["libpod"]
    assert db["name"] == "db" and db["state"] == "running" and db["pid"] == 4242
    assert db["image"] == "docker.io/pg:16" and db["image_as_typed"] == "pg:16"
    assert db["create_command"] == [
        "podman", "run", "-d", "-e", "POSTGRES_PASSWORD=", "--name", "db", "pg:16"
    ]  # fmt: skip
    assert db["env_names"] == ["POSTGRES_PASSWORD"]
    assert db["named_volumes"] == [{"volumeName": "pgdata", "dest": "/data"}]
    assert db["mounts"][0]["source"] == "/srv/pg"
    assert found["abc"].rw_layer == os.fsencode(copy / "overlay/rwlayer/diff")
    # In libpod's database only (its storage gone): listed, with the reason.
    assert found["old"].info["libpod"]["state"] == "exited" and found["old"].problems
    assert "PLANTED-ENV" not in json.dumps([c.to_dict() for c in found.values()])


def test_a_torn_wal_frame_is_not_applied(tmp_path: Path) -> None:
    store, writer = _store(tmp_path)
    good = tmp_path / "good"
    shutil.copytree(store, good)
    writer.execute("INSERT INTO ContainerConfig VALUES ('late', 'late', NULL, '{}')")
    writer.commit()
    torn = tmp_path / "torn"
    shutil.copytree(store, torn)
    writer.close()
    wal = bytearray((torn / "db.sql-wal").read_bytes())
    wal[-100] ^= 0xFF  # a byte of the last frame's page: its checksum fails
    (torn / "db.sql-wal").write_bytes(bytes(wal))
    conn, _ = sqliteimage.open_image(os.fsencode(torn / "db.sql"))
    ids = {r[0] for r in conn.execute("SELECT ID FROM ContainerConfig")}
    assert ids == {"old", "abc"}  # the last transaction is torn: the one before it holds
    conn, applied = sqliteimage.open_image(os.fsencode(good / "db.sql"))
    assert applied > 0 and {r[0] for r in conn.execute("SELECT ID FROM ContainerConfig")} == {
        "old", "abc"}  # fmt: skip


def test_what_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "db.sql").write_bytes(b"not sqlite at all")
    os.mkfifo(tmp_path / "fifo")
    for name, reason in (("db.sql", "not an SQLite"), ("fifo", "not a regular file")):
        try:
            sqliteimage.open_image(os.fsencode(tmp_path / name))
        except sqliteimage.ImageError as e:
            assert reason in str(e)
        else:
            raise AssertionError(name)
