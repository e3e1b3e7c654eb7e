"""Stored names for hostile host paths: safe, inside artifacts/, and never colliding."""

from __future__ import annotations

import base64
import itertools

from collectors.pathmap import describe, stored_relpath
from manifests.layout import is_safe_relpath


def test_hostile_components_are_encoded() -> None:
    assert stored_relpath(b"/var/log/a\nb") == "var/log/a%0Ab"
    assert stored_relpath(b"/x/../../etc/shadow") == "x/%2E%2E/%2E%2E/etc/shadow"
    assert stored_relpath(b"/d/bad\xffname") == "d/bad%FFname"
    assert stored_relpath(b"/d/50%") == "d/50%25"
    assert stored_relpath(b"/d/-rf") == "d/-rf"
    assert stored_relpath("/d/日本".encode()) == "d/日本"


def test_encoding_is_injective_and_safe() -> None:
    pieces = [b"a", b"%", b"%25", b"\n", b"%0A", b"..", b".", b"\xff", b"%FF", b"\\", b"b c"]
    seen: dict[str, bytes] = {}
    for combo in itertools.product(pieces, repeat=2):
        raw = b"/" + b"/".join(combo)
        if b"/./" in raw + b"/":
            continue  # "." components are dropped: /a/./b is /a/b
        name = stored_relpath(raw)
        assert is_safe_relpath(name), name
        assert seen.setdefault(name, raw) == raw, (name, raw, seen[name])


def test_long_names_are_shortened_with_a_digest() -> None:
    name = stored_relpath(b"/" + b"\xff" * 250)
    assert len(name.encode()) <= 255 and "%~" in name
    assert name != stored_relpath(b"/" + b"\xff" * 251)


def test_describe_keeps_raw_bytes_when_needed() -> None:
    assert describe(b"/var/log/syslog") == {"path": "/var/log/syslog"}
    odd = describe(b"/tmp/bad\xffname")
    assert base64.b64decode(odd["path_b64"]) == b"/tmp/bad\xffname"
    assert "path_b64" in describe(b"/tmp/back\\slash")


def test_unsafe_relpaths() -> None:
    for bad in ["", "/etc/shadow", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a/"]:
        assert not is_safe_relpath(bad), bad
    assert is_safe_relpath("artifacts/files/x")
