"""A tolerant reading of what the volatile collectors (``processes``, ``network``,
``system``) stored under ``artifacts/volatile/``.

The collectors' format is documented in ``docs/volatile.md``; this reader relies only on
the keys it needs, treats every one as optional, and says "not collected" rather than
guessing when a file or key is absent. Each loaded file keeps the journal ``seq`` of the
``artifact`` record that vouches for it, so findings can cite it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .evidence import Evidence

VOLATILE = "artifacts/volatile"
# The keys of each row that the findings, the host facts and the timeline read, with
# the types they may have; the rest (open files, memory maps, environment) is left out of
# memory, and a value of another type is dropped (and counted), so that no finding
# trips over a list where the collector writes a number.
_TEXT, _INT, _LIST = (str,), (int,), (list,)
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "processes": {
        **{"pid": _INT, "ppid": _INT, "name": _TEXT, "exe": _TEXT, "exe_deleted": (bool,)},
        **{"flags": _LIST, "executable": (dict,), "cmdline": _LIST, "username": _TEXT},
        **{"uids": _LIST, "create_time": _TEXT},
    },
    "sockets": {
        **{"family": _TEXT, "status": _TEXT, "proto": _TEXT, "laddr": _TEXT, "lport": _INT},
        **{"raddr": _TEXT, "rport": _INT, "pid": _INT, "process": _TEXT, "exe": _TEXT},
        **{"exe_sha256": _TEXT},
    },
}


def typed(row: dict[str, Any], schema: dict[str, tuple[type, ...]]) -> tuple[dict[str, Any], int]:
    """``row`` with only the keys of ``schema`` whose values have its types (a process's
    flags and executable are checked inside too), and how many values were dropped."""
    out: dict[str, Any] = {}
    dropped = 0
    for key, types in schema.items():
        if key not in row:
            continue
        value: Any = row[key]
        if value is None:  # the collectors write null for what they could not read
            out[key] = None
            continue
        if not isinstance(value, types) or (types is _INT and isinstance(value, bool)):
            dropped += 1
            continue
        if key == "flags" and isinstance(value, list):
            value = [
                f if isinstance(f, str) else {"flag": f["flag"], "reason": f.get("reason")}
                for f in value
                if isinstance(f, str) or (isinstance(f, dict) and isinstance(f.get("flag"), str))
            ]
        elif key == "executable" and isinstance(value, dict):
            value = {
                k: value[k] for k in ("sha256", "preserved_as") if isinstance(value.get(k), str)
            }
        out[key] = value
    return out, dropped


@dataclass
class Source:
    """One stored file and the journal record that vouches for it."""

    path: str
    seq: int | None

    def ref(self, **extra: Any) -> dict[str, Any]:
        return {"artifact": self.path, "seq": self.seq, **extra}


@dataclass
class Volatile:
    processes: list[dict[str, Any]] | None = None
    sockets: list[dict[str, Any]] | None = None
    network: dict[str, Any] | None = None
    system: dict[str, Any] | None = None
    sources: dict[str, Source] = field(default_factory=dict)

    def source(self, key: str) -> Source:
        return self.sources.get(key) or Source("(not collected)", None)


def _find(evidence: Evidence, names: tuple[str, ...]) -> str | None:
    for name in names:
        rel = f"{VOLATILE}/{name}"
        if rel in evidence.artifacts:
            return rel
    return None


def load(evidence: Evidence) -> Volatile:
    v = Volatile()
    for key, names, jsonl in (
        ("processes", ("processes.jsonl", "processes.json"), True),
        ("sockets", ("sockets.jsonl", "sockets.json"), True),
        ("network", ("network.json",), False),
        ("system", ("system.json",), False),
    ):
        rel = _find(evidence, names)
        if rel is None:
            continue
        if rel.endswith(".jsonl"):
            data = evidence.read_jsonl(rel, tuple(SCHEMA[key]))
        else:
            data = evidence.read_json(rel)
        if jsonl and isinstance(data, dict):  # a JSON file holding a list under a key
            data = data.get(key)
        if data is None or (jsonl and not isinstance(data, list)):
            continue
        if jsonl:
            data = _rows(evidence, rel, data, SCHEMA[key])
        elif not isinstance(data, dict):
            continue
        elif key == "network":
            for name in ("listening", "remote_established"):
                if isinstance(data.get(name), list):
                    data[name] = _rows(evidence, rel, data[name], SCHEMA["sockets"])
        setattr(v, key, data)
        v.sources[key] = Source(rel, evidence.artifacts[rel].get("seq"))
    return v


def _rows(
    evidence: Evidence, rel: str, data: list[Any], schema: dict[str, tuple[type, ...]]
) -> list[dict[str, Any]]:
    rows, dropped = [], 0
    for row in data:
        if isinstance(row, dict):
            clean, n = typed(row, schema)
            rows.append(clean)
            dropped += n
    if dropped:
        evidence.not_examined(
            rel,
            f"{dropped} value(s) of an unexpected type were ignored",
            "not what the collectors write (docs/volatile.md)",
        )
    return rows


def listening(v: Volatile) -> list[dict[str, Any]] | None:
    """Listening sockets: ``network.json``'s list, else derived from the socket table."""
    if v.network and isinstance(v.network.get("listening"), list):
        return [s for s in v.network["listening"] if isinstance(s, dict)]
    if v.sockets is None:
        return None
    return [
        s
        for s in v.sockets
        if s.get("family") != "unix"
        and (s.get("status") == "LISTEN" or (s.get("proto") == "udp" and not s.get("raddr")))
    ]


def listening_source(v: Volatile) -> Source:
    if v.network and isinstance(v.network.get("listening"), list):
        return v.source("network")
    return v.source("sockets")


def established(v: Volatile) -> list[dict[str, Any]] | None:
    """Every established inet connection (the caller decides what is non-local)."""
    if v.sockets is not None:
        return [
            s
            for s in v.sockets
            if s.get("family") in ("inet", "inet6") and s.get("status") == "ESTABLISHED"
        ]
    if v.network and isinstance(v.network.get("remote_established"), list):
        return [s for s in v.network["remote_established"] if isinstance(s, dict)]
    return None


def established_source(v: Volatile) -> Source:
    return v.source("sockets") if v.sockets is not None else v.source("network")
