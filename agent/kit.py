"""The responder kit: where it is, what it claims to be, and whether it is intact.

A kit is a folder holding the frozen ``preserve`` and ``verify`` executables, ``KIT.json``
(version, build time, glibc floor), ``kit.pub`` and ``SHA256SUMS`` signed with the kit key
(``SHA256SUMS.sig``, raw Ed25519 over the file's bytes). Every file of the kit except the
sums, their signature and the ``evidence/`` folder is listed in the sums; a file that
differs, is missing, was added or is a symlink makes the kit "modified".

The in-kit key only proves the kit is as its builder signed it if the key itself is the
builder's: ``selfcheck`` prints its fingerprint to compare with the kit's label, and
``--fingerprint`` pins it."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.digest import sha256_bytes, sha256_path_nofollow
from manifests.errors import KeyLoadError, SignatureError, UsageError
from manifests.signing import fingerprint_of, load_public_key_pem, verify_signature
from manifests.sums import compare_sums, parse_sums
from manifests.treewalk import walk

KIT_INFO = "KIT.json"
KIT_SUMS = "SHA256SUMS"
KIT_SIG = "SHA256SUMS.sig"
KIT_PUB = "kit.pub"
EVIDENCE = "evidence"
OVERRIDE_FLAG = "--i-know-the-kit-is-modified"
UNSUMMED = frozenset({KIT_SUMS, KIT_SIG})
MAX_RECORDED_PROBLEMS = 20
MAX_PRELOAD_BYTES = 64 * 1024
# What the kit may take from the host: glibc itself (the loader and its libraries) and,
# for the bootloader only, zlib. Anything else mapped into the process came from the
# host's loader configuration (/etc/ld.so.preload, LD_PRELOAD): a classic rootkit place.
GLIBC_PART = re.compile(
    r"^(ld-linux[\w.-]*|lib(c|m|dl|pthread|rt|util|resolv|anl|mvec|nss_\w+)(-[\d.]+)?\.so[\d.]*)$"
)


def _text(value: str) -> str:
    """Journal-safe text: a non-UTF-8 file name planted in the kit must not break the
    journal's canonical JSON, so undecodable bytes are written as ``\\xNN``."""
    return os.fsencode(value).decode("utf-8", "backslashreplace")


def _info_text(value: object) -> str | None:
    """A KIT.json value for the journal: whatever a modified kit put there, text or None
    (the journal takes no floats)."""
    return None if value is None else _text(str(value))


class KitModifiedError(UsageError):
    """The kit's files do not match its signed sums; running it would be untrustworthy,
    so nothing is done (exit 2) unless the responder overrides."""


def running_kit() -> Path | None:
    """The kit folder when this process is a frozen executable, else None.

    Every frozen build counts as a kit: deleting ``KIT.json`` or the sums must make the
    check fail, not skip it."""
    if not getattr(sys, "frozen", False):
        return None
    return Path(os.path.realpath(sys.executable)).parent


@dataclass
class KitCheck:
    kit: Path
    info: dict[str, Any] = field(default_factory=dict)
    sums_sha256: str | None = None
    fingerprint: str | None = None
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    pin: str | None = None  # "matched", "mismatch" or None when no fingerprint was pinned
    loader: dict[str, Any] | None = None  # loader_report() of the running kit

    @property
    def ok(self) -> bool:
        return not self.problems and self.pin != "mismatch"

    def summary(self) -> str:
        if self.ok:
            return f"kit intact ({self.checked} files match the signed sums)"
        first = self.problems[0] if self.problems else "kit key does not match the pinned one"
        return f"{len(self.problems) or 1} problem(s), first: {first}"

    def journal_fields(self, override: bool) -> dict[str, Any]:
        """The ``kit`` field of the journal's start record: which build collected."""
        return {
            "version": _info_text(self.info.get("version")),
            "built": _info_text(self.info.get("built")),
            "path": _text(str(self.kit)),
            "sums_sha256": self.sums_sha256,
            "key_fingerprint": self.fingerprint,
            "check": "ok" if self.ok else "modified",
            "files_checked": self.checked,
            "problems": [_text(p) for p in self.problems[:MAX_RECORDED_PROBLEMS]],
            "override": bool(override and not self.ok),
            **({"loader": self.loader} if self.loader is not None else {}),
        }

    def loader_warning(self) -> str | None:
        """One line for the responder when the host's loader put foreign code in the kit."""
        if not self.loader:
            return None
        foreign = self.loader["unexpected"] + self.loader["ld_so_preload"]
        if self.loader["ld_preload"]:
            foreign.append("LD_PRELOAD is set")
        if not foreign:
            return None
        return (
            f"the host's loader added code to this process ({', '.join(sorted(set(foreign)))}): "
            "a rootkit may hide files or processes from the collection; note it on the form "
            "(the journal records it)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.journal_fields(False),
            "ok": self.ok,
            "pin": self.pin,
            "problems": self.problems,
            "info": self.info,
        }


def loader_report(kit: Path) -> dict[str, Any]:
    """Which host libraries are mapped into this process, and what the host asks its
    loader to preload. Availability: Linux (/proc/self/maps)."""
    kit_prefix = os.path.realpath(kit) + "/"
    mapped: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(None, 5)
                path = parts[5].strip() if len(parts) == 6 else ""
                if path.startswith("/") and ".so" in os.path.basename(path):
                    mapped.add(path)
    except OSError:
        pass
    host = sorted(p for p in mapped if not os.path.realpath(p).startswith(kit_prefix))
    preload: list[str] = []
    try:
        fd = os.open("/etc/ld.so.preload", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            text = os.read(fd, MAX_PRELOAD_BYTES).decode("utf-8", "backslashreplace")
        finally:
            os.close(fd)
        preload = [w for w in text.split() if w]
    except OSError:
        pass
    return {
        "host_libraries": host,
        "unexpected": [p for p in host if not GLIBC_PART.match(os.path.basename(p))],
        "ld_so_preload": preload,
        # Whether it is set, not its value: environment values are never stored; the
        # libraries it loaded are in host_libraries anyway.
        "ld_preload": bool(os.environ.get("LD_PRELOAD")),
    }


def _listed_files(kit: Path) -> tuple[set[str], list[str]]:
    """Relative paths of the kit's regular files that the sums must cover, and problems
    (symlinks, devices, what cannot be examined) found on the way; ``evidence/`` is the
    kit's output, not the kit."""
    files: set[str] = set()
    problems: list[str] = []
    top = os.fsencode(kit)

    def failed(path: bytes, e: OSError) -> None:
        rel = os.fsdecode(os.path.relpath(path, top))
        problems.append(f"{rel}: unreadable ({e.strerror or e})")

    for entry in walk(top, failed, ignore=frozenset({os.fsencode(EVIDENCE)}), lstat=True):
        assert entry.stat is not None  # lstat=True
        rel, mode = os.fsdecode(entry.rel), entry.stat.st_mode
        if stat.S_ISLNK(mode):
            problems.append(f"{rel}: is a symlink (the kit has none)")
        elif stat.S_ISREG(mode) and rel not in UNSUMMED:
            files.add(rel)
        elif not stat.S_ISREG(mode):
            problems.append(f"{rel}: not a regular file")
    return files, problems


def _hash(kit: Path, rel: str) -> tuple[str, str | None]:
    try:
        return rel, sha256_path_nofollow(os.path.join(kit, rel))[0]
    except OSError as e:
        return rel, f"unreadable: {e.strerror or e}"


def check_kit(kit: Path, pin_fingerprint: str | None = None) -> KitCheck:
    """Check the kit's signature and every file against its signed sums."""
    result = KitCheck(kit)
    try:
        info = json.loads((kit / KIT_INFO).read_bytes())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        result.info = info
    except (OSError, ValueError) as e:
        result.problems.append(f"{KIT_INFO}: unreadable ({e})")
    try:
        sums = (kit / KIT_SUMS).read_bytes()
        signature = (kit / KIT_SIG).read_bytes()
        public_key = load_public_key_pem((kit / KIT_PUB).read_bytes())
    except (OSError, KeyLoadError) as e:
        result.problems.append(f"cannot read the kit's sums, signature or key: {e}")
        return result
    result.sums_sha256 = sha256_bytes(sums)
    result.fingerprint = fingerprint_of(public_key)
    if pin_fingerprint:
        result.pin = "matched" if pin_fingerprint == result.fingerprint else "mismatch"
    try:
        verify_signature(public_key, signature, sums)
        expected = parse_sums(sums)
    except (SignatureError, ValueError) as e:
        result.problems.append(f"{KIT_SUMS}: {e}")
        return result
    present, problems = _listed_files(kit)
    result.problems += problems
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        hashed = dict(pool.map(lambda r: _hash(kit, r), sorted(present & set(expected))))
    result.checked = len(hashed)
    diff = compare_sums(expected, {rel: hashed.get(rel) for rel in present})
    result.problems += [f"{rel}: added (not in the signed sums)" for rel in diff.not_listed]
    result.problems += [f"{rel}: missing" for rel in diff.only_listed]
    for rel in diff.differ:
        digest = hashed[rel]
        detail = digest if digest and digest.startswith("unreadable") else "content differs"
        result.problems.append(f"{rel}: {detail}")
    return result


def gate(override: bool) -> tuple[KitCheck | None, dict[str, Any]]:
    """The start-up check of a kit executable. Returns the check (None outside a kit) and
    the journal ``kit`` field; raises KitModifiedError when the kit is modified and the
    responder did not override."""
    kit = running_kit()
    if kit is None:
        return None, {}
    result = check_kit(kit)
    result.loader = loader_report(kit)
    if not result.ok and not override:
        raise KitModifiedError(
            f"this kit at {kit} has been modified ({result.summary()}) and cannot be trusted",
            hint=f"use an intact copy (details: preserve selfcheck), or add {OVERRIDE_FLAG} "
            "to run anyway (the journal records it)",
        )
    return result, {"kit": result.journal_fields(override)}


def gate_verify(override: bool) -> None:
    """``verify`` from a modified kit could report altered evidence as intact: refuse
    (KitModifiedError, exit 2)."""
    result, _ = gate(override)
    if result is not None and not result.ok:
        print(f"WARNING: running a modified kit ({result.summary()})", file=sys.stderr)
