"""The release state, saved on the kit (next to the evidence, never inside it).

``OUTPUT/.preserve-isolation/<evidence-name>.json`` holds the exact release plan plus the
host name and network namespace it applies to, so ``preserve release`` can undo the cut
from a second shell, or after the first one died, without trusting anything on the host."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

STATE_DIR = ".preserve-isolation"
IN_FORCE = ("applying", "in-force", "not-confirmed", "failed")

# A rule's comment on the host names the state file on the kit, so that a bare
# ``preserve release`` can find it. Only plain paths: nothing that needs quoting.
_PATH = r"/[A-Za-z0-9/._+@:-]{1,200}\.json"
_HINT = re.compile(rf"preserve state: ({_PATH})")
_QUOTED_HINT = re.compile(rf'"preserve state: ({_PATH})"')


def hint(state_file: str | None, limit: int) -> str | None:
    """The comment text naming ``state_file``, or None when it cannot be written safely."""
    text = f"preserve state: {state_file}"
    return text if state_file and _HINT.fullmatch(text) and len(text) <= limit else None


def find_hint(listing: str) -> str | None:
    """The state file named in a ruleset listing (``nft list``, ``iptables -S``)."""
    match = _QUOTED_HINT.search(listing)
    return match.group(1) if match else None


def netns_inode() -> str:
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return ""


def where() -> dict[str, str]:
    return {"hostname": socket.gethostname(), "netns": netns_inode()}


def state_path(output: Path, ident: str) -> Path:
    return Path(output) / STATE_DIR / f"{ident}.json"


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically and durably: a torn state file would strand the host isolated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(state, indent=2, sort_keys=True).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        state = json.loads(f.read(4 * 1024 * 1024))
    if not isinstance(state, dict) or "release" not in state:
        raise ValueError(f"{path} is not a preserve isolation state file")
    return state


def _states_here(output: Path, statuses: tuple[str, ...]) -> list[tuple[Path, dict[str, Any]]]:
    """The readable states under OUTPUT with one of ``statuses``, for this host and
    network namespace."""
    here = where()
    found = []
    for path in sorted((Path(output) / STATE_DIR).glob("*.json")):
        try:
            state = load(path)
        except (OSError, ValueError):
            continue
        if state.get("status") in statuses and all(state.get(k) == v for k, v in here.items()):
            found.append((path, state))
    return found


def find_in_force(output: Path) -> list[tuple[Path, dict[str, Any]]]:
    """States under OUTPUT that are still in force on this host and namespace, newest first."""
    found = _states_here(output, IN_FORCE)
    return sorted(found, key=lambda item: item[1].get("created", ""), reverse=True)


def find_released(output: Path) -> list[tuple[Path, dict[str, Any]]]:
    """States under OUTPUT already released on this host and namespace, newest release
    first: a second ``preserve release`` says when, instead of failing."""
    found = _states_here(output, ("released",))
    return sorted(found, key=lambda item: str(item[1].get("released", "")), reverse=True)
