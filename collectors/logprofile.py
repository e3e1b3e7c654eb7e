"""Log profiles: which log sources a run reads, as data (TOML) rather than code.

A profile is checked completely when it is loaded, before anything is collected, so a typo
in a hand-written profile is a usage error naming the file, the entry and the key, never a
silently empty collection. Shipped profiles live in ``collectors/profiles/``; ``--profile``
takes one of their names or the path of a ``.toml`` file written to the same schema
(see docs/logs.md)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from typing import Any

from manifests.errors import UsageError

from .triageprofile import TriageSettings, parse_triage

DEFAULT_PROFILE = "standard"
_TOP_KEYS = {"version", "description", "collectors", "source", "windows", "macos", "triage"}
_SOURCE_KEYS = {"root", "description", "include", "exclude", "max_depth"}
_WINDOWS_KEYS = {"channels", "all_channels"}
_MACOS_KEYS = {"unified_log", "last"}
_LAST = re.compile(r"\d+[smhd]")


class ProfileError(UsageError):
    """A profile that cannot be used (exit 2); the message names where and what to fix."""


@dataclass(frozen=True)
class LogSource:
    root: bytes
    description: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_depth: int | None = None

    def selects(self, path: bytes) -> bool:
        """Does this source take ``path`` (a file at or under ``root``)?

        Patterns are shell globs matched against the path relative to ``root`` (``*``
        also crosses ``/``); a pattern without ``/`` also matches the bare file name."""
        if path == self.root:
            return True
        rel_b = path[len(self.root.rstrip(b"/")) + 1 :]
        rel = rel_b.decode("utf-8", "surrogateescape")
        name = rel.rsplit("/", 1)[-1]
        if self.max_depth is not None and rel.count("/") >= self.max_depth:
            return False

        def hit(patterns: tuple[str, ...]) -> bool:
            return any(
                fnmatchcase(rel, p) or ("/" not in p and fnmatchcase(name, p)) for p in patterns
            )

        if self.include and not hit(self.include):
            return False
        return not hit(self.exclude)

    def covers(self, path: bytes) -> bool:
        root = self.root.rstrip(b"/")
        return (path == self.root or path.startswith(root + b"/")) and self.selects(path)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    sources: tuple[LogSource, ...]
    collectors: tuple[str, ...] | None = None
    windows_channels: tuple[str, ...] = ()
    windows_all_channels: bool = False
    macos_unified_log: bool = False
    macos_last: str | None = None
    triage: TriageSettings = TriageSettings()

    def with_paths(self, paths: list[bytes]) -> Profile:
        """The same profile plus whole trees given on the command line (``--path``)."""
        extra = tuple(LogSource(p, "given with --path") for p in paths)
        return Profile(
            self.name,
            self.description,
            self.sources + extra,
            self.collectors,
            self.windows_channels,
            self.windows_all_channels,
            self.macos_unified_log,
            self.macos_last,
            self.triage,
        )


def shipped_profiles() -> list[str]:
    folder = resources.files("collectors") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(spec: str | None) -> Profile:
    """``None`` -> the default; a shipped name; or a path to a TOML file."""
    spec = spec or DEFAULT_PROFILE
    looks_like_file = spec.endswith(".toml") or os.sep in spec or os.path.exists(spec)
    if looks_like_file:
        try:
            with open(spec, "rb") as f:
                raw = f.read(1024 * 1024 + 1)
        except OSError as e:
            raise ProfileError(f"cannot read profile {spec}: {e.strerror}") from e
        if len(raw) > 1024 * 1024:
            raise ProfileError(f"profile {spec} is larger than 1 MiB; is it the right file?")
        name = spec
    else:
        if spec not in shipped_profiles():
            raise ProfileError(
                f"unknown profile {spec!r}; use one of {', '.join(shipped_profiles())} "
                "or the path of a .toml profile file"
            )
        raw = (resources.files("collectors") / "profiles" / f"{spec}.toml").read_bytes()
        name = spec
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProfileError(f"profile {name} is not valid TOML: {e}") from e
    return parse_profile(name, data)


def _unknown(where: str, table: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise ProfileError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(known))})")


def _str_list(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ProfileError(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def _bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProfileError(f"{where}: {key!r} must be true or false")
    return value


def _source(where: str, entry: Any) -> LogSource:
    if not isinstance(entry, dict):
        raise ProfileError(f"{where}: must be a table ([[source]])")
    _unknown(where, entry, _SOURCE_KEYS)
    root = entry.get("root")
    if not isinstance(root, str) or not root.startswith("/"):
        raise ProfileError(f"{where}: 'root' must be an absolute path such as \"/var/log\"")
    if any(c in root for c in "*?["):
        raise ProfileError(f"{where}: 'root' is a literal path; put patterns in 'include'")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ProfileError(f"{where}: 'description' is required (say what this source is)")
    depth = entry.get("max_depth")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ProfileError(f"{where}: 'max_depth' must be a whole number of at least 1")
    return LogSource(
        root=os.fsencode(os.path.normpath(root)),
        description=description,
        include=_str_list(where, "include", entry.get("include", [])),
        exclude=_str_list(where, "exclude", entry.get("exclude", [])),
        max_depth=depth,
    )


def parse_profile(name: str, data: dict[str, Any]) -> Profile:
    where = f"profile {name}"
    _unknown(where, data, _TOP_KEYS)
    if data.get("version") != 1:
        raise ProfileError(f"{where}: 'version = 1' is required (the only schema version)")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ProfileError(f"{where}: 'description' must be a string")
    entries = data.get("source", [])
    if not isinstance(entries, list):
        raise ProfileError(f"{where}: sources are written as [[source]] tables")
    sources = tuple(_source(f"{where}, source #{i + 1}", e) for i, e in enumerate(entries))
    collectors = None
    if "collectors" in data:
        collectors = _str_list(where, "collectors", data["collectors"])
    windows = data.get("windows", {})
    macos = data.get("macos", {})
    for key, table in (("windows", windows), ("macos", macos)):
        if not isinstance(table, dict):
            raise ProfileError(f"{where}: [{key}] must be a table")
    _unknown(f"{where}, [windows]", windows, _WINDOWS_KEYS)
    _unknown(f"{where}, [macos]", macos, _MACOS_KEYS)
    last = macos.get("last")
    if last is not None and (not isinstance(last, str) or not _LAST.fullmatch(last)):
        raise ProfileError(f"{where}, [macos]: 'last' must look like 30m, 12h or 3d")
    if not sources and not windows and not macos:
        raise ProfileError(f"{where}: no [[source]], [windows] or [macos]: nothing to collect")
    return Profile(
        name=name,
        description=description,
        sources=sources,
        collectors=collectors,
        windows_channels=_str_list(f"{where}, [windows]", "channels", windows.get("channels", [])),
        windows_all_channels=_bool(
            f"{where}, [windows]", "all_channels", windows.get("all_channels", False)
        ),
        macos_unified_log=_bool(
            f"{where}, [macos]", "unified_log", macos.get("unified_log", False)
        ),
        macos_last=last,
        triage=parse_triage(where, data.get("triage", {})),
    )
