"""``packages`` runs alongside its stage and ``executables`` meanwhile (issue 14): the two
really overlap (the collection log's start and end times), the output is the same as in
the old order, one after the other, on the same tree (integrity report, executables
listing, privileged files, findings), the seal covers both (verify passes), and a full
drive met in the alongside thread ends the run as it always did: sealed, no hang.
In-process runs of the real orchestrator over a host tree made here."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import journal_records, requires_root, verify
from test_packages import _db

from agent.console import Console
from agent.orchestrator import RunConfig, RunOutcome, run
from agent.stopsignals import StopGuard
from collectors.base import Collector
from collectors.context import CollectContext, Options
from collectors.executables import ExecutablesCollector
from collectors.outcomes import SPACE_MARGIN
from collectors.packages import PackagesCollector
from manifests.signing import Signer

ARTIFACTS = (
    "artifacts/packages/integrity.json",
    "artifacts/executables/sha256.jsonl",
    "artifacts/executables/privileged.json",
)
# Fields of a finding that do not depend on when it was made.
FINDING = ("collector", "rule", "severity", "source", "message", "artifact", "path")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A host tree: packaged executables (handed on), a modified one, unpackaged and
    set-user-ID ones, a staged executable, and one large package file that keeps
    ``packages`` reading for a while."""
    root = tmp_path_factory.mktemp("alongside") / "host"
    files = {f"/usr/bin/tool{n}": f"tool {n}".encode() for n in range(40)}
    files |= {"/usr/lib/libz.so.1": b"zlib", "/usr/bin/sshd": b"real sshd"}
    files["/usr/share/big.dat"] = os.urandom(1 << 20) * 96  # ~0.1 s of MD5
    _db(root, "base", files, {})
    for path, data in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(data)
        if path.startswith("/usr/bin/"):
            os.chmod(root / path.lstrip("/"), 0o755)
    (root / "usr/bin/sshd").write_bytes(b"trojan sshd")  # modified: a HIGH finding
    for n in range(30):  # unpackaged: hashed while packages still reads
        (root / f"usr/local/bin/own{n}").parent.mkdir(parents=True, exist_ok=True)
        (root / f"usr/local/bin/own{n}").write_bytes(f"own {n}".encode())
        os.chmod(root / f"usr/local/bin/own{n}", 0o755)
    os.chmod(root / "usr/local/bin/own0", 0o4755)  # SUID, no package: HIGH
    (root / "tmp").mkdir()
    (root / "tmp/.x").write_bytes(b"\x7fELF staged")
    os.chmod(root / "tmp/.x", 0o755)
    time.sleep(1.1)  # settled: old enough for the digests to be handed on
    yield root


def _collect(
    host: Path, out: Path, alongside: bool, collectors: list[Collector] | None = None
) -> RunOutcome:
    """One run of packages then executables over ``host``, the orchestrator's way."""
    out.mkdir(exist_ok=True)
    saved = PackagesCollector.alongside
    for cls in (PackagesCollector, ExecutablesCollector):
        cls.root = os.fsencode(host)
    PackagesCollector.alongside = alongside  # type: ignore[misc]
    try:
        config = RunConfig(
            output=out,
            signer=Signer.generate_ephemeral(),
            collectors=collectors or [PackagesCollector(), ExecutablesCollector()],
            options=Options(only=("packages", "executables")),
        )
        with StopGuard() as guard:
            return run(config, Console(quiet=True, json_mode=True), guard)
    finally:
        PackagesCollector.alongside = saved  # type: ignore[misc]
        for cls in (PackagesCollector, ExecutablesCollector):
            cls.root = b"/"


def _findings(evidence: Path) -> list[dict[str, Any]]:
    found = [r for r in journal_records(evidence) if r.get("event") == "finding"]
    return sorted(({k: r.get(k) for k in FINDING} for r in found), key=json.dumps)


def _times(evidence: Path) -> dict[tuple[str, str], str]:
    """(event, collector) -> timestamp, from the collection log."""
    times = {}
    for line in (evidence / "collection.log").read_bytes().splitlines():
        r = json.loads(line)
        if r.get("event") in ("collector_started", "collector_finished"):
            times[(r["event"], r["collector"])] = r["timestamp"]
    return times


def test_alongside_output_is_the_old_orders_and_overlaps(host: Path, tmp_path: Path) -> None:
    new = _collect(host, tmp_path / "new", alongside=True)
    old = _collect(host, tmp_path / "old", alongside=False)
    new_dir, old_dir = Path(new.evidence_dir), Path(old.evidence_dir)
    for rel in ARTIFACTS:
        assert (new_dir / rel).read_bytes() == (old_dir / rel).read_bytes(), rel
    listing = [json.loads(x) for x in (new_dir / ARTIFACTS[1]).read_text().splitlines()]
    assert len(listing) == 40 + 2 + 30 + 1 and all(r["sha256"] for r in listing)
    rules = {f["rule"] for f in _findings(new_dir)}
    assert {"package-file-modified", "privileged-unpackaged"} <= rules, rules
    assert _findings(new_dir) == _findings(old_dir)
    assert new.counts == old.counts and new.exit_code == old.exit_code == 0
    # really at the same time: executables starts before packages ends
    t = _times(new_dir)
    assert t[("collector_started", "executables")] < t[("collector_finished", "packages")]
    t = _times(old_dir)
    assert t[("collector_finished", "packages")] <= t[("collector_started", "executables")]
    checked = verify(new_dir, "--fingerprint", new.fingerprint)
    assert checked.returncode == 0, checked.stdout.decode()


class _FillsTheDrive(PackagesCollector):
    """The real packages collector on a drive that fills while it reads."""

    filler: Path

    def collect(self, ctx: CollectContext) -> None:
        st = os.statvfs(self.filler.parent)  # room for the seal, none for the report
        left = st.f_bavail * st.f_frsize - SPACE_MARGIN
        with open(self.filler, "wb") as f:
            f.write(b"\0" * max(0, left))
        super().collect(ctx)


@requires_root
def test_a_full_drive_in_the_alongside_thread_ends_the_run_sealed(
    host: Path, tmp_path: Path
) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", tiny], check=True)
    try:
        packages = _FillsTheDrive()
        packages.filler = tiny / "filler"
        began = time.monotonic()
        outcome = _collect(host, tiny, True, [packages, ExecutablesCollector()])
        assert time.monotonic() - began < 60  # executables did not wait for ever
        assert outcome.status == "stopped: output disk full"
        assert outcome.exit_code == 1
        evidence = Path(outcome.evidence_dir)
        records = journal_records(evidence)
        assert not any(r.get("path") == "artifacts/packages/integrity.json" for r in records)
        assert records[-1]["type"] == "seal"
        packages.filler.unlink()  # not the evidence's: verify would call it added
        checked = verify(evidence, "--fingerprint", outcome.fingerprint)
        assert checked.returncode == 0, checked.stdout.decode()
    finally:
        subprocess.run(["umount", "-l", tiny], check=False)
