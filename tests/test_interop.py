"""The evidence is checkable with standard tools alone: coreutils and OpenSSL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import collect_json
from evidence_factory import make_source_tree

from manifests.sums import format_sums, parse_sums


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("interop")
    src = make_source_tree(base)
    (src / "back\\slash").write_text("b\n")
    (src / "new\nline").write_text("n\n")
    (src / "-leading-dash").write_text("d\n")
    (src / b"bad\xffbyte".decode("utf-8", "surrogateescape")).write_text("x\n")
    return Path(collect_json(base / "out", "--only", "files", "--path", src)["evidence_dir"])


def test_sha256sum_check_passes(evidence: Path) -> None:
    result = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=evidence, capture_output=True
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.count(b": OK") == len((evidence / "SHA256SUMS").read_bytes().splitlines())


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_openssl_verifies_manifest_signature(evidence: Path) -> None:
    result = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "signer.pub",
            "-rawin",
            "-in",
            "manifest.json",
            "-sigfile",
            "manifest.json.sig",
        ],
        cwd=evidence,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"Signature Verified Successfully" in result.stdout


def test_sums_escaping_matches_coreutils(tmp_path: Path) -> None:
    names = ["plain", "back\\slash", "new\nline", "cr\rname", "sp ace"]
    for name in names:
        (tmp_path / name).write_text(name)
    coreutils = subprocess.run(
        ["sha256sum", "--", *sorted(names)], cwd=tmp_path, capture_output=True, check=True
    ).stdout
    parsed = parse_sums(coreutils)
    assert set(parsed) == set(names)
    assert format_sums(parsed.items()) == coreutils  # byte for byte, escapes included
    # Round trip: what we write, coreutils checks.
    (tmp_path / "SUMS").write_bytes(format_sums(parsed.items()))
    check = subprocess.run(["sha256sum", "-c", "SUMS"], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0, check.stdout.decode()
