"""CASE/UCO JSON-LD (CASE 1.x): the collection and the custody chain as linked data.

- the collection is a ``case-investigation:InvestigativeAction`` named "collected", with
  the examiner as performer, preserve (name, version) as instrument, the host as object,
  start and end times, and as results every artifact and the first ``ProvenanceRecord``;
- each artifact is a ``uco-observable:File`` with a ``FileFacet`` (host path, size,
  times from the source's ``stat``) and a ``ContentDataFacet`` holding its SHA-256;
- each custody transfer is an ``InvestigativeAction`` named "transferred", performed by
  the new holder, whose object is the previous ``ProvenanceRecord`` and whose result is a
  new one (same exhibit, same files, the new holder's key fingerprint).

Node IRIs are UUIDv5 names derived from the chain's first record, so exporting the same
evidence twice gives the same graph."""

from __future__ import annotations

import uuid
from typing import Any

from .. import __version__

CONTEXT = {
    "kb": "http://example.org/kb/",
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}


def _dt(text: Any) -> dict[str, str] | None:
    """xsd:dateTime with at most microseconds (the journal keeps nanoseconds)."""
    if not isinstance(text, str) or len(text) < 20:
        return None
    body = text.rstrip("Z")
    if "." in body:
        head, frac = body.split(".", 1)
        body = f"{head}.{frac[:6]}"
    return {"@type": "xsd:dateTime", "@value": body + "Z"}


def _ns_dt(ns: Any) -> dict[str, str] | None:
    from manifests.clock import utc_from_ns

    try:
        return _dt(utc_from_ns(int(ns)))
    except (TypeError, ValueError):
        return None


def _int(n: Any) -> dict[str, Any]:
    return {"@type": "xsd:integer", "@value": int(n)}


class _Ids:
    def __init__(self, seed: str) -> None:
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, f"preserve:{seed}")

    def __call__(self, kind: str, key: str = "") -> str:
        return f"kb:{kind}-{uuid.uuid5(self.ns, f'{kind}:{key}')}"


def _file(ids: _Ids, a: dict[str, Any]) -> dict[str, Any]:
    src = a.get("source") or {}
    st = src.get("stat") if isinstance(src.get("stat"), dict) else {}
    host_path = src.get("path")
    path = str(host_path or a["path"])
    facet: dict[str, Any] = {
        "@id": ids("file-facet", a["path"]),
        "@type": "uco-observable:FileFacet",
        "uco-observable:fileName": path.rstrip("/").rsplit("/", 1)[-1] or path,
        "uco-observable:filePath": path,
        "uco-observable:sizeInBytes": _int(a.get("size") or 0),
    }
    for key, prop in (
        ("mtime_ns", "modifiedTime"),
        ("atime_ns", "accessedTime"),
        ("ctime_ns", "metadataChangeTime"),
    ):
        value = _ns_dt(st.get(key)) if st.get(key) else None
        if value:
            facet[f"uco-observable:{prop}"] = value
    content = {
        "@id": ids("content-facet", a["path"]),
        "@type": "uco-observable:ContentDataFacet",
        "uco-observable:sizeInBytes": _int(a.get("size") or 0),
        "uco-observable:hash": [
            {
                "@id": ids("hash", a["path"]),
                "@type": "uco-types:Hash",
                # UCO 1.4+: a plain string from HashNameVocab's list.
                "uco-types:hashMethod": "SHA256",
                "uco-types:hashValue": {"@type": "xsd:hexBinary", "@value": a["sha256"].upper()},
            }
        ],
    }
    where = f"stored as {a['path']} (journal seq {a.get('seq')})"
    if host_path:
        where = f"copy of {host_path} on the host, " + where
    return {
        "@id": ids("file", a["path"]),
        "@type": "uco-observable:File",
        "uco-core:name": a["path"],
        "uco-core:description": f"{where}, by collector {a.get('collector')}",
        "uco-core:hasFacet": [facet, content],
    }


def _person(ids: _Ids, name: str, fingerprint: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@id": ids("person", f"{name}:{fingerprint}"),
        "@type": "uco-identity:Person",
        "uco-core:name": name,
    }
    if fingerprint:
        node["uco-core:description"] = f"Ed25519 signing key fingerprint {fingerprint}"
    return node


def build(
    records: list[dict[str, Any]],
    artifacts: list[dict[str, Any]],
    evidence_name: str,
    verified: bool,
) -> dict[str, Any]:
    start = records[0] if records and records[0].get("type") == "start" else {}
    end = next((r for r in reversed(records) if r.get("type") == "end"), {})
    ids = _Ids(str(start.get("signer", {}).get("fingerprint")) + str(start.get("time")))
    tool = start.get("tool") or {}
    host = (start.get("host") or {}).get("hostname") or "unknown host"
    exhibit = str(start.get("case") or evidence_name)
    signer = (start.get("signer") or {}).get("fingerprint")

    graph: list[dict[str, Any]] = []
    examiner = _person(ids, str(start.get("examiner") or "unnamed examiner"), signer)
    instrument = {
        "@id": ids("tool", str(tool.get("version"))),
        "@type": "uco-tool:Tool",
        "uco-core:name": str(tool.get("name") or "preserve"),
        "uco-tool:version": str(tool.get("version") or "unknown"),
        "uco-core:description": f"code SHA-256 {tool.get('code_sha256')}; exported by "
        f"preserve {__version__}",
    }
    device = {
        "@id": ids("device", host),
        "@type": "uco-observable:Device",
        "uco-core:name": host,
        "uco-core:description": f"machine id {(start.get('host') or {}).get('machine_id')}",
    }
    files = [_file(ids, a) for a in sorted(artifacts, key=lambda r: r["path"])]
    file_refs = [{"@id": f["@id"]} for f in files]
    graph += [examiner, instrument, device, *files]

    def provenance(n: int, holder: str, fingerprint: str | None) -> dict[str, Any]:
        return {
            "@id": ids("provenance-record", str(n)),
            "@type": "case-investigation:ProvenanceRecord",
            "case-investigation:exhibitNumber": exhibit,
            "uco-core:description": f"held by {holder}"
            + (f", signing key {fingerprint}" if fingerprint else ""),
            "uco-core:object": file_refs,
        }

    record = provenance(0, examiner["uco-core:name"], signer)
    collected: dict[str, Any] = {
        "@id": ids("investigative-action", "collected"),
        "@type": "case-investigation:InvestigativeAction",
        "uco-core:name": "collected",
        "uco-core:description": f"preserve collection of {host} into {evidence_name}: "
        f"status {end.get('status', 'unfinished')}"
        + ("" if verified else "; WARNING: the evidence FAILED verification at export"),
        "uco-action:performer": {"@id": examiner["@id"]},
        "uco-action:instrument": {"@id": instrument["@id"]},
        "uco-action:object": [{"@id": device["@id"]}],
        "uco-action:result": [*file_refs, {"@id": record["@id"]}],
    }
    if _dt(start.get("time")):
        collected["uco-action:startTime"] = _dt(start.get("time"))
    if _dt(end.get("time")):
        collected["uco-action:endTime"] = _dt(end.get("time"))
    graph += [record, collected]
    actions = [collected["@id"]]
    for n, t in enumerate((r for r in records if r.get("type") == "transfer"), 1):
        holder = _person(ids, str(t.get("to")), t.get("fingerprint"))
        new = provenance(n, str(t.get("to")), t.get("fingerprint"))
        action: dict[str, Any] = {
            "@id": ids("investigative-action", f"transferred-{n}"),
            "@type": "case-investigation:InvestigativeAction",
            "uco-core:name": "transferred",
            "uco-core:description": f"custody transfer at journal seq {t.get('seq')} from "
            f"{t.get('from_name') or t.get('from')} to {t.get('to')}"
            + (f": {t.get('note')}" if t.get("note") else ""),
            "uco-action:performer": {"@id": holder["@id"]},
            "uco-action:object": [{"@id": record["@id"]}],
            "uco-action:result": [{"@id": new["@id"]}],
        }
        if _dt(t.get("time")):
            action["uco-action:startTime"] = _dt(t.get("time"))
        graph += [holder, new, action]
        actions.append(action["@id"])
        record = new
    graph.append(
        {
            "@id": ids("investigation", exhibit),
            "@type": "case-investigation:Investigation",
            "uco-core:name": exhibit,
            "uco-core:object": [{"@id": a} for a in actions],
        }
    )
    return {"@context": CONTEXT, "@graph": graph}
