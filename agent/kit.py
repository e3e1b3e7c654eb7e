"""The responder kit: where it is, what it claims to be, and whether it is intact.

A kit is a folder holding the ``preserve`` and ``verify`` launchers, the frozen program
and its own loader and libraries under ``_internal/``, ``KIT.json`` (version, build time,
kernel floor, the loader's fingerprint), ``kit.pub`` and ``SHA256SUMS`` signed with the kit
key (``SHA256SUMS.sig``, raw Ed25519 over the file's bytes). Every file of the kit except the
sums, their signature and the ``evidence/`` folder is listed in the sums; a file that
differs, is missing, was added or is a symlink makes the kit "modified".

The in-kit key only proves the kit is as its builder signed it if the key itself is the
builder's: ``selfcheck`` prints its fingerprint to compare with the kit's label, and
``--fingerprint`` pins it."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.selfexec import frozen_kit_dir
from manifests.digest import sha256_bytes, sha256_path_nofollow
from manifests.errors import KeyLoadError, SignatureError, UsageError
from manifests.signing import fingerprint_of, load_public_key_pem, verify_signature
from manifests.sums import compare_sums, parse_sums
from manifests.treewalk import walk

from .kitloader import loader_path, loader_problem

KIT_INFO = "KIT.json"
KIT_SUMS = "SHA256SUMS"
KIT_SIG = "SHA256SUMS.sig"
KIT_PUB = "kit.pub"
EVIDENCE = "evidence"
OVERRIDE_FLAG = "--i-know-the-kit-is-modified"
UNSUMMED = frozenset({KIT_SUMS, KIT_SIG})
MAX_RECORDED_PROBLEMS = 20
PRELOAD_LIST = "/etc/ld.so.preload"


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
    kit = frozen_kit_dir()
    return None if kit is None else Path(kit)


def verify_command(evidence: object, fingerprint: str) -> str:
    """The verify command for the closing box, as it can be typed where the run was
    started: in a kit that is the kit's own ``verify`` (``./verify`` from the kit's
    folder), not a ``verify`` the host's PATH may find."""
    kit = running_kit()
    program = "verify"
    if kit is not None:
        try:
            here = os.path.realpath(os.getcwd())
        except OSError:  # the working directory was removed
            here = ""
        program = "./verify" if here == os.path.realpath(kit) else shlex.quote(str(kit / "verify"))
    return f"{program} {shlex.quote(str(evidence))} --fingerprint {fingerprint}"


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
        """One line for the responder when the host's loader put foreign code in the kit,
        or asks for it (the kit's own loader refuses; other programs on the host obey)."""
        if not self.loader:
            return None
        foreign = list(self.loader["unexpected"])
        if self.loader["ld_preload"]:
            foreign.append("LD_PRELOAD is set")
        if foreign:
            return (
                f"the host's loader added code to this process ({', '.join(sorted(set(foreign)))}"
                "): a rootkit may hide files or processes from the collection; note it on the "
                "form (the journal records it)"
            )
        asked = [f"{PRELOAD_LIST} names {', '.join(self.loader['ld_so_preload'])}"] * bool(
            self.loader["ld_so_preload"]
        ) + [
            f"{n} was set"
            for n in self.loader.get("environment_dropped", [])
            if n in ("LD_PRELOAD", "LD_AUDIT")
        ]
        if asked:
            return (
                f"the host tells its loader to add code to programs ({'; '.join(asked)}): a "
                "user-space rootkit's place. The kit's own loader ignored it, so the kit's view "
                "is clean, but the host's own tools are not to be trusted; note it on the form"
            )
        return None

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
    loader to preload, read past libc (collectors/loaderview.py). Availability: Linux.
    Imported here: it brings the collector context, which ``verify`` never needs."""
    from collectors import loaderview

    return loaderview.view(str(kit))


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
    # A kit that names or carries its own loader must have it patched (KIT.json is under
    # the signed sums, so the claim itself cannot be dropped without failing the check).
    if "loader" in result.info or os.path.lexists(loader_path(kit)):
        problem = loader_problem(loader_path(kit))
        if problem:
            result.problems.append(problem)
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
