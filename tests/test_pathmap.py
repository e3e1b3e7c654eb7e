"""Stored names for hostile host paths: safe, inside artifacts/, and never colliding."""

from __future__ import annotations

import base64
import itertools
from urllib.parse import unquote_to_bytes

from collectors.pathmap import StoredNames, describe, stored_relpath
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


# What FAT32 and exFAT refuse, and what Windows opens as a device; the drivers in
# tests/test_output_drives.py check the same names on real file systems.
FAT_REFUSED = frozenset('"*:<>?\\|')
DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789"}

HOSTILE_NAMES = [
    *(f"a{c}b".encode() for c in sorted(FAT_REFUSED)),
    b"trailing.",
    b"trailing ",
    b"dots...",
    b"CON",
    b"con.txt",
    b"Nul.tar.gz",
    b"COM1",
    b"lpt9.log",
    b"AUX .x",
    b"x" * 300,
    "é".encode() * 150,  # 300 bytes, 150 UTF-16 units
    "😀".encode() * 70,  # 280 bytes, 140 UTF-16 units
]


def fat_storable(name: str) -> bool:
    stem = name.split(".")[0].rstrip(" ").upper()
    return (
        not any(c in FAT_REFUSED or ord(c) < 0x20 for c in name)
        and name[-1] not in ". "
        and stem not in DEVICES
        and len(name.encode("utf-8")) <= 255
        and len(name.encode("utf-16-le")) // 2 <= 255
    )


def test_names_fat_and_exfat_refuse_are_escaped_reversibly() -> None:
    assert stored_relpath(b"/d/a:b") == "d/a%3Ab"
    assert stored_relpath(b"/d/what?") == "d/what%3F"
    assert stored_relpath(b"/d/trailing.") == "d/trailing%2E"
    assert stored_relpath(b"/d/trailing ") == "d/trailing%20"
    assert stored_relpath(b"/d/CON") == "d/%43ON"
    assert stored_relpath(b"/d/con.txt") == "d/%63on.txt"
    assert stored_relpath(b"/d/CONSOLE") == "d/CONSOLE"  # only the device names themselves
    for raw in HOSTILE_NAMES:
        name = stored_relpath(b"/" + raw)
        assert fat_storable(name), (raw, name)
        if "%~" not in name:  # shortened names map back through the journal only
            assert unquote_to_bytes(name) == raw


def test_plain_names_stay_plain() -> None:
    for raw in [b"syslog", b"auth.log.1", b"a b", b"x~2", b"-rf", b"[x]{y}", "日本".encode()]:
        assert stored_relpath(b"/" + raw) == raw.decode()


def test_encoding_stays_injective_with_the_fat_escapes() -> None:
    pieces = [b"a", b"A", b":", b"%3A", b".", b" ", b"%2E", b"CON", b"%43ON", b"c", b"\xff"]
    seen: dict[str, bytes] = {}
    for combo in itertools.product(pieces, repeat=3):
        raw = b"".join(combo)
        if raw in (b".", b".."):
            continue
        name = stored_relpath(b"/" + raw)
        assert seen.setdefault(name, raw) == raw, (name, raw, seen[name])


def test_names_differing_only_in_case_are_kept_apart() -> None:
    names = StoredNames()
    assert names.claim("artifacts/files/d/Readme") == "artifacts/files/d/Readme"
    assert names.claim("artifacts/files/d/README") == "artifacts/files/d/README~2"
    assert names.claim("artifacts/files/d/Readme") == "artifacts/files/d/Readme~3"
    # a directory that differs only in case is renamed, and its files follow it
    assert names.claim("artifacts/files/D/x") == "artifacts/files/D~2/x"
    assert names.claim("artifacts/files/D/y") == "artifacts/files/D~2/y"
    assert names.claim("artifacts/files/d/x") == "artifacts/files/d/x"
    # a file and a directory of the same name cannot both exist either
    assert names.claim("artifacts/files/d/x/inner") == "artifacts/files/d/x~2/inner"
    assert names.claim("artifacts/files/straße") == "artifacts/files/straße"
    assert names.claim("artifacts/files/STRASSE") == "artifacts/files/STRASSE~2"


def test_claims_handle_deep_trees() -> None:
    names = StoredNames()
    deep = "/".join(["d"] * 6000)
    assert names.claim(f"{deep}/f") == f"{deep}/f"
    assert names.claim(f"{deep.upper()}/f").startswith("D~2/")
