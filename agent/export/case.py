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
evidence twice gives the same graph.

The graph is written as the journal is read (``write``), files in journal order: memory
does not grow with the number of files. The provenance records and the collection
list every file, so the list of file references is kept in an unnamed temporary file
(about 80 bytes a file) and copied into each of them."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import uuid
from collections.abc import Iterable
from typing import IO, Any

from manifests.clock import utc_from_ns

from .. import __version__
from ..report.bounded import clip, mapping
from ..report.bounded import text as _text
from .stream import Indented, Sink, is_sealed_artifact

MAX_TRANSFERS = 100  # custody transfers exported (each repeats the list of every file)

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
    try:
        return _dt(utc_from_ns(int(ns)))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _int(n: Any) -> dict[str, Any]:
    return {"@type": "xsd:integer", "@value": int(n)}


class _Ids:
    def __init__(self, seed: str) -> None:
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, f"preserve:{seed}")

    def __call__(self, kind: str, key: str = "") -> str:
        return f"kb:{kind}-{uuid.uuid5(self.ns, f'{kind}:{key}')}"


def exportable(a: dict[str, Any]) -> bool:
    """An artifact record with what a file node needs: a size and a SHA-256 (verify
    reports one without them as tampering)."""
    size, digest = a.get("size"), a.get("sha256")
    return type(size) is int and size >= 0 and isinstance(digest, str)


def _file(ids: _Ids, a: dict[str, Any]) -> dict[str, Any]:
    src = mapping(a.get("source"))
    st = mapping(src.get("stat"))
    host_path = src.get("path") if isinstance(src.get("path"), str) else None
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
    where = f"stored as {a['path']} (journal seq {_text(a.get('seq'))})"
    if host_path:
        where = f"copy of {host_path} on the host, " + where
    return {
        "@id": ids("file", a["path"]),
        "@type": "uco-observable:File",
        "uco-core:name": a["path"],
        "uco-core:description": f"{where}, by collector {_text(a.get('collector'))}",
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


class _Graph:
    """The document, node by node, as ``json.dumps(document, indent=2)`` writes it."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.node = Indented(2)
        self.first = True
        out.write('{\n  "@context": ' + json.dumps(CONTEXT, indent=2).replace("\n", "\n  "))
        out.write(',\n  "@graph": [')

    def add(self, node: dict[str, Any], refs: IO[bytes] | None = None, last: str = "") -> None:
        """Write ``node``; with ``refs``, its value ``REFS`` becomes the list of the file
        references written to ``refs`` (see ``_ref``), then ``last`` if given."""
        self.out.write("\n    " if self.first else ",\n    ")
        self.first = False
        text = self.node(node)
        if refs is None:
            self.out.write(text)
            return
        head, tail = text.split(json.dumps(REFS), 1)
        size = refs.seek(0, os.SEEK_END)
        if not size and not last:
            self.out.write(head + "[]" + tail)
            return
        refs.seek(0)
        self.out.write(head + "[\n")
        self.out.copy(refs)
        self.out.write((",\n" if size and last else "") + last + "\n      ]" + tail)

    def close(self) -> None:
        self.out.write("\n  ]\n}\n")
        self.out.flush()


REFS = "@@file-references@@"  # stands for the list of every file in a node


def _ref(iri: str) -> str:
    """One ``{"@id": IRI}`` item of a list in a graph node, indented as json does."""
    return '        {\n          "@id": ' + json.dumps(iri) + "\n        }"


def _header(ids: _Ids, start: dict[str, Any]) -> list[dict[str, Any]]:
    """The examiner, the tool and the host: the collection's performer, instrument and
    object."""
    fp = mapping(start.get("signer")).get("fingerprint")
    tool, host_info = mapping(start.get("tool")), mapping(start.get("host"))
    host = _text(host_info.get("hostname") or "unknown host")
    examiner = _person(
        ids, _text(start.get("examiner") or "unnamed examiner"), fp if isinstance(fp, str) else None
    )
    instrument = {
        "@id": ids("tool", _text(tool.get("version"))),
        "@type": "uco-tool:Tool",
        "uco-core:name": _text(tool.get("name") or "preserve"),
        "uco-tool:version": _text(tool.get("version") or "unknown"),
        "uco-core:description": f"code SHA-256 {_text(tool.get('code_sha256'))}; exported by "
        f"preserve {__version__}",
    }
    device = {
        "@id": ids("device", host),
        "@type": "uco-observable:Device",
        "uco-core:name": host,
        "uco-core:description": f"machine id {_text(host_info.get('machine_id'))}",
    }
    return [examiner, instrument, device]


def write(
    out: Sink,
    records: Iterable[dict[str, Any]],
    evidence_name: str,
    verified: bool,
    sealed: int | None,
) -> list[str]:
    """Write the graph of a journal's ``records`` (the verified ones, in order; artifacts
    only up to seq ``sealed``) to ``out`` as they are read; returns warnings."""
    stream = iter(records)
    first = next(stream, None)
    start = clip(first, 64 * 1024) if first and first.get("type") == "start" else {}
    ids = _Ids(_text(mapping(start.get("signer")).get("fingerprint")) + _text(start.get("time")))
    exhibit = _text(start.get("case") or evidence_name)
    host = _text(mapping(start.get("host")).get("hostname") or "unknown host")
    signer = mapping(start.get("signer")).get("fingerprint")
    graph = _Graph(out)
    examiner, instrument, device = _header(ids, start)
    for node in (examiner, instrument, device):
        graph.add(node)
    end: dict[str, Any] = {}
    transfers: list[dict[str, Any]] = []
    skipped = 0
    with tempfile.TemporaryFile() as refs:
        for r in itertools.chain([first] if first else [], stream):
            kind = r.get("type")
            if kind == "end":
                end = clip(r)
            elif kind == "transfer":
                if len(transfers) < MAX_TRANSFERS:
                    transfers.append(clip(r))
                else:
                    skipped += 1
            elif kind == "artifact" and is_sealed_artifact(r, sealed) and exportable(r):
                node = _file(ids, r)
                graph.add(node)
                refs.write(((",\n" if refs.tell() else "") + _ref(node["@id"])).encode())

        def provenance(n: int, holder: str, fingerprint: Any) -> dict[str, Any]:
            return {
                "@id": ids("provenance-record", str(n)),
                "@type": "case-investigation:ProvenanceRecord",
                "case-investigation:exhibitNumber": exhibit,
                "uco-core:description": f"held by {holder}"
                + (f", signing key {_text(fingerprint)}" if fingerprint else ""),
                "uco-core:object": REFS,
            }

        record = provenance(0, examiner["uco-core:name"], signer)
        collected: dict[str, Any] = {
            "@id": ids("investigative-action", "collected"),
            "@type": "case-investigation:InvestigativeAction",
            "uco-core:name": "collected",
            "uco-core:description": f"preserve collection of {host} into {evidence_name}: "
            f"status {_text(end.get('status', 'unfinished'))}"
            + ("" if verified else "; WARNING: the evidence FAILED verification at export"),
            "uco-action:performer": {"@id": examiner["@id"]},
            "uco-action:instrument": {"@id": instrument["@id"]},
            "uco-action:object": [{"@id": device["@id"]}],
            "uco-action:result": REFS,
        }
        if _dt(start.get("time")):
            collected["uco-action:startTime"] = _dt(start.get("time"))
        if _dt(end.get("time")):
            collected["uco-action:endTime"] = _dt(end.get("time"))
        graph.add(record, refs)
        graph.add(collected, refs, last=_ref(record["@id"]))
        actions = [collected["@id"]]
        for n, t in enumerate(transfers, 1):
            to, fingerprint = _text(t.get("to")), t.get("fingerprint")
            holder = _person(ids, to, fingerprint if isinstance(fingerprint, str) else None)
            new = provenance(n, to, fingerprint)
            action: dict[str, Any] = {
                "@id": ids("investigative-action", f"transferred-{n}"),
                "@type": "case-investigation:InvestigativeAction",
                "uco-core:name": "transferred",
                "uco-core:description": f"custody transfer at journal seq "
                f"{_text(t.get('seq'))} from {_text(t.get('from_name') or t.get('from'))} to {to}"
                + (f": {_text(t.get('note'))}" if t.get("note") else ""),
                "uco-action:performer": {"@id": holder["@id"]},
                "uco-action:object": [{"@id": record["@id"]}],
                "uco-action:result": [{"@id": new["@id"]}],
            }
            if _dt(t.get("time")):
                action["uco-action:startTime"] = _dt(t.get("time"))
            graph.add(holder)
            graph.add(new, refs)
            graph.add(action)
            actions.append(action["@id"])
            record = new
    graph.add(
        {
            "@id": ids("investigation", exhibit),
            "@type": "case-investigation:Investigation",
            "uco-core:name": exhibit,
            "uco-core:object": [{"@id": a} for a in actions],
        }
    )
    graph.close()
    if skipped:
        return [f"{skipped} custody transfer(s) after the first {MAX_TRANSFERS} not exported"]
    return []
