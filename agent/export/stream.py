"""Writing an export as the journal is read: memory does not grow with the number of files.

Every export is one pass over the verified journal (``VerificationResult.iter_records``,
the one parser), writing each artifact's line or node as its record is read, in journal
order (the order of collection). ``Sink`` batches the text into large writes;
``indented`` writes a JSON node exactly as ``json.dumps(..., indent=2)`` would inside a
document, without its cost for each of a million nodes of the same shape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps uses
from typing import IO, Any

from manifests.errors import OutputError
from manifests.verify import VerificationResult

_FLUSH = 1024 * 1024
_HINT = "check the space where it goes, or choose another -o path"
_SENTINEL = re.compile(r'"@@(\d+)@@"')


class Sink:
    """Text written to a binary stream as UTF-8, in writes of about a megabyte."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= _FLUSH:
            self.flush()

    def copy(self, source: IO[bytes]) -> None:
        """Everything left in ``source``, after what was written so far."""
        self.flush()
        while chunk := source.read(_FLUSH):
            self._write(chunk)

    def flush(self) -> None:
        if self._parts:
            self._write("".join(self._parts).encode("utf-8"))
            self._parts, self._size = [], 0

    def _write(self, data: bytes) -> None:
        try:
            self.stream.write(data)
        except OSError as e:
            raise OutputError(f"cannot write the export: {e.strerror}", hint=_HINT) from e


def is_sealed_artifact(record: dict[str, Any], sealed: int | None) -> bool:
    """An artifact record with a stored path that a valid seal covers (seq ``sealed``)."""
    seq = record.get("seq")
    return (
        sealed is not None
        and record.get("type") == "artifact"
        and isinstance(record.get("path"), str)
        and isinstance(seq, int)
        and seq <= sealed
    )


def sealed_artifacts(verification: VerificationResult) -> Iterator[dict[str, Any]]:
    """The artifact records a valid seal covers, in journal order. The whole journal is
    read (not only to the last seal), so that a journal changed since it was verified
    raises ``JournalChangedError`` at the end instead of being exported as verified."""
    sealed = verification.sealed_through
    for record in verification.iter_records():
        if is_sealed_artifact(record, sealed):
            yield record


def _signature(value: Any, sig: list[str], leaves: list[str]) -> None:
    """The shape of ``value`` (keys, nesting, which values vary) into ``sig`` and the JSON
    text of its strings and integers into ``leaves``, in document order. Nodes are
    built by the exporters, a few levels deep: this recursion is bounded."""
    if isinstance(value, dict):
        sig.append("{")
        for key, item in value.items():
            sig.append("k" + key)
            _signature(item, sig, leaves)
        sig.append("}")
    elif isinstance(value, list):
        sig.append("[")
        for item in value:
            _signature(item, sig, leaves)
        sig.append("]")
    elif isinstance(value, str):
        sig.append("s")
        leaves.append(_quote(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        sig.append("s")
        leaves.append(int.__repr__(value))
    else:
        sig.append("c" + json.dumps(value))


def _sentinels(value: Any, counter: list[int]) -> Any:
    """``value`` with each string and integer replaced by a numbered sentinel."""
    if isinstance(value, dict):
        return {k: _sentinels(v, counter) for k, v in value.items()}
    if isinstance(value, list):
        return [_sentinels(v, counter) for v in value]
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        counter[0] += 1
        return f"@@{counter[0] - 1}@@"
    return value


class Indented:
    """JSON nodes as ``json.dumps(node, indent=2)`` writes them at ``level`` levels of
    indentation inside a document, from a template per shape of node (its keys and
    nesting): the shape is dumped once with sentinels for its values, and each node of
    that shape fills them in with their JSON text, encoded as ``json`` encodes them."""

    def __init__(self, level: int) -> None:
        self.prefix = "\n" + "  " * level
        self._templates: dict[str, list[str]] = {}

    def __call__(self, node: Any) -> str:
        sig: list[str] = []
        leaves: list[str] = []
        _signature(node, sig, leaves)
        key = "\0".join(sig)
        parts = self._templates.get(key)
        if parts is None:
            shape = json.dumps(_sentinels(node, [0]), indent=2)
            parts = _SENTINEL.split(shape.replace("\n", self.prefix))
            self._templates[key] = parts
        out = parts[:]
        for i in range(1, len(parts), 2):
            out[i] = leaves[int(parts[i])]
        return "".join(out)
