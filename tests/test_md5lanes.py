"""MD5 in SIMD lanes (collectors/_md5lanes.c, collectors/lanedigest.py) gives hashlib's
digests: every length 0..300 and the block boundaries, lanes of mixed lengths in one
batch, streams fed in pieces, on each engine this CPU runs; real files, a big one among
many small, with their other digests (SHA-256) from the same reads; hashlib when forced or
when the extension cannot be imported; and the packages collector's integrity.json the
same with lanes and with hashlib, on a tree made here and on the real dpkg database seen
in a private mount namespace."""

from __future__ import annotations

import builtins
import hashlib
import importlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PRESERVE_ARGV, ROOT, _Log, journal_records, requires_root
from evidence_factory import new_writer

from collectors import lanedigest
from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine
from collectors.filedigest import Read, Want, digest_files
from collectors.packages import PackagesCollector

try:
    from collectors import _md5lanes  # type: ignore[attr-defined]
except ImportError:  # built without a compiler: only the hashlib fallback is tested
    _md5lanes = None
needs_lanes = pytest.mark.skipif(_md5lanes is None, reason="the extension was not built")
ENGINES = ("avx512", "avx2", "scalar")
BOUNDARIES = (55, 56, 63, 64, 65, 119, 120, (1 << 20) - 1, 1 << 20, (1 << 20) + 1)


def _engine(name: str) -> str:
    if _md5lanes is None:
        pytest.skip("the extension was not built")
    if name not in _md5lanes.engines():
        pytest.skip(f"this CPU lacks {name}")
    return name


def _hash_all(engine: str, datas: list[bytes]) -> list[bytes]:
    """Every data through the lanes, each fed whole as its last buffer, lanes refilled
    as they finish (so lengths mix in every batch)."""
    lanes = _md5lanes.Lanes(engine)
    out: list[bytes] = [b""] * len(datas)
    todo, free, owner = list(range(len(datas))), list(range(lanes.lanes)), {}
    while todo or owner:
        while free and todo:
            lane, k = free.pop(), todo.pop()
            owner[lane] = k
            lanes.feed(lane, datas[k], True)
        for lane, digest in lanes.run():
            out[owner.pop(lane)] = digest
            free.append(lane)
    return out


@pytest.mark.parametrize("name", ENGINES)
def test_every_length_and_boundary_is_hashlibs(name: str) -> None:
    engine = _engine(name)
    rng = random.Random(7)
    datas = [rng.randbytes(n) for n in (*range(301), *BOUNDARIES)]
    assert _md5lanes.Lanes(engine).engine == engine
    assert _hash_all(engine, datas) == [hashlib.md5(d).digest() for d in datas]


@pytest.mark.parametrize("name", ENGINES)
def test_streams_fed_in_pieces_while_other_lanes_finish(name: str) -> None:
    """One long stream in 64 KiB pieces on lane 0 while the others hash short ones: the
    long one's state survives every run in which others end."""
    engine = _engine(name)
    lanes = _md5lanes.Lanes(engine)
    big = os.urandom(64 * 1024 * 10 + 33)
    pieces = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    small = [os.urandom(n) for n in range(1000, 1000 + 40 * (lanes.lanes - 1))]
    got: dict[int, bytes] = {}
    owner: dict[int, int] = {}
    next_small = 0
    for lane in range(1, lanes.lanes):
        owner[lane], next_small = next_small, next_small + 1
        lanes.feed(lane, small[owner[lane]], True)
    lanes.feed(0, pieces[0], len(pieces) == 1)
    piece = 1
    big_digest = None
    while big_digest is None or owner:
        for lane, digest in lanes.run():
            if lane == 0:
                if digest is not None:
                    big_digest = digest
                else:
                    lanes.feed(0, pieces[piece], piece == len(pieces) - 1)
                    piece += 1
                continue
            got[owner.pop(lane)] = digest
            if next_small < len(small):
                owner[lane], next_small = next_small, next_small + 1
                lanes.feed(lane, small[owner[lane]], True)
    assert big_digest == hashlib.md5(big).digest()
    assert [got[k] for k in range(len(small))] == [hashlib.md5(s).digest() for s in small]


@needs_lanes
def test_a_buffer_that_is_not_the_last_must_be_whole_blocks() -> None:
    lanes = _md5lanes.Lanes("scalar")
    with pytest.raises(ValueError):
        lanes.feed(0, b"x" * 65)
    with pytest.raises(ValueError):
        _md5lanes.Lanes("no-such-engine")


def _tree(root: Path) -> dict[str, bytes]:
    """One big file among many small ones, every small length near a block boundary."""
    root.mkdir()
    rng = random.Random(3)
    files = {f"s{n}": rng.randbytes(n) for n in (*range(0, 300, 7), *BOUNDARIES[:7])}
    files.update({f"k{i}": rng.randbytes(rng.randrange(1, 200_000)) for i in range(150)})
    files["big"] = rng.randbytes(9 * 1024 * 1024 + 5)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


@pytest.mark.parametrize("name", ENGINES)
def test_real_files_a_big_one_among_many_small(tmp_path: Path, name: str) -> None:
    engine = _engine(name)
    files = _tree(tmp_path / "t")
    (tmp_path / "t" / "link").symlink_to("big")
    items: list[tuple[str, Want | Read]] = [
        (n, Want(os.fsencode(tmp_path / "t" / n), ("md5", "sha256") if n == "big" else ("md5",)))
        for n in [*files, "link", "absent"]
    ]
    items.append(("known", Read("ok", 0o100644, None, {"md5": "given"})))
    got = dict(lanedigest.digest_lanes(items, None, engine))
    assert got.pop("link").state == "not-regular"
    assert got.pop("absent").state == "missing"
    assert got.pop("known").digests == {"md5": "given"}
    assert got["big"].digests["sha256"] == hashlib.sha256(files["big"]).hexdigest()
    assert {n: r.digests["md5"] for n, r in got.items()} == {
        n: hashlib.md5(d).hexdigest() for n, d in files.items()
    }
    assert all(r.stat is not None and r.stat.st_size == len(files[n]) for n, r in got.items())


@pytest.mark.parametrize("name", ENGINES)
def test_a_failed_read_and_a_file_whose_stat_says_zero(name: str) -> None:
    """/proc/self/mem is a regular file whose first read fails (EIO): unreadable, as with
    hashlib; /proc/version says 0 bytes and has some: read on to its end, in the lane."""
    engine = _engine(name)
    items: list[tuple[str, Want | Read]] = [
        ("mem", Want(b"/proc/self/mem", ("md5",))),
        ("version", Want(b"/proc/version", ("md5",))),
    ]
    got = dict(lanedigest.digest_lanes(items, None, engine))
    assert got == dict(digest_files(items))
    assert got["mem"].state == "unreadable"
    expected = hashlib.md5(Path("/proc/version").read_bytes()).hexdigest()
    assert got["version"].digests == {"md5": expected}


@needs_lanes
def test_the_forced_engine_and_hashlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRESERVE_MD5_ENGINE", "hashlib")
    assert lanedigest.md5_engine() == "hashlib"
    monkeypatch.setenv("PRESERVE_MD5_ENGINE", "scalar")
    assert lanedigest.md5_engine() == "scalar"
    monkeypatch.setenv("PRESERVE_MD5_ENGINE", "nonsense")
    assert lanedigest.md5_engine() == _md5lanes.engines()[0]
    files = _tree(tmp_path / "t")
    items = [(n, Want(os.fsencode(tmp_path / "t" / n), ("md5",))) for n in files]
    in_order = list(digest_files(items, md5_engine="hashlib"))
    assert [n for n, _ in in_order] == list(files)  # hashlib keeps the order asked
    assert {n: r.digests["md5"] for n, r in in_order} == {
        n: hashlib.md5(d).hexdigest() for n, d in files.items()
    }


def test_without_the_extension_hashlib_does_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The extension not importable (a build without a compiler): the module still loads,
    names hashlib, and digests are right."""
    real_import = builtins.__import__

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.endswith("_md5lanes") or (args and "_md5lanes" in (args[2] or ())):
            raise ImportError("simulated: not built")
        return real_import(name, *args, **kwargs)

    monkeypatch.delenv("PRESERVE_MD5_ENGINE", raising=False)
    monkeypatch.setattr(builtins, "__import__", refuse)
    monkeypatch.delitem(sys.modules, "collectors._md5lanes", raising=False)
    monkeypatch.delitem(sys.modules, "collectors.lanedigest")
    try:
        fresh = importlib.import_module("collectors.lanedigest")
        assert fresh._md5lanes is None
        assert fresh.available() == ("hashlib",)
        assert fresh.md5_engine() == "hashlib"
        files = _tree(tmp_path / "t")
        items = [(n, Want(os.fsencode(tmp_path / "t" / n), ("md5",))) for n in files]
        got = {n: r.digests["md5"] for n, r in fresh.digest_lanes(items)}
        assert got == {n: hashlib.md5(d).hexdigest() for n, d in files.items()}
    finally:
        monkeypatch.undo()
        importlib.reload(lanedigest)


def _dpkg_tree(root: Path) -> None:
    """A dpkg database and its files: many small, two big, modified, missing, conffiles."""
    rng = random.Random(11)
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    status = []
    for p in range(6):
        listed, sums = [], []
        for i in range(120):
            path = f"/usr/lib/pkg{p}/f{i}.so" if i % 3 == 0 else f"/usr/share/pkg{p}/d{i}"
            data = rng.randbytes(rng.choice((0, 1, 55, 56, 63, 64, 65, 119, 120, 4000, 70_000)))
            if i == 7 and p < 2:
                data = rng.randbytes(5 * 1024 * 1024 + 1)  # big ones holding lanes
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            recorded = hashlib.md5(data).hexdigest()
            if i % 41 == 5:
                data += b"implant"  # modified
            if i % 53 != 9:  # else missing
                target.write_bytes(data)
            listed.append(path)
            sums.append(f"{recorded}  {path.lstrip('/')}\n")
        conf = root / f"etc/pkg{p}.conf"
        conf.parent.mkdir(exist_ok=True)
        conf.write_bytes(b"edited" if p % 2 else b"original")
        (info / f"pkg{p}.md5sums").write_text("".join(sums))
        (info / f"pkg{p}.list").write_text(
            "".join(f"{x}\n" for x in [*listed, f"/etc/pkg{p}.conf"])
        )
        status.append(
            f"Package: pkg{p}\nStatus: install ok installed\nConffiles:\n"
            f" /etc/pkg{p}.conf {hashlib.md5(b'original').hexdigest()}\n\n"
        )
    (root / "var/lib/dpkg/status").write_text("".join(status))


def _integrity(tmp_path: Path, root: Path) -> tuple[bytes, list[str]]:
    """The packages collector on ``root`` in an evidence directory of its own: its
    integrity.json and the engines its journal names."""
    writer = new_writer(tmp_path)
    engine = CopyEngine(writer)
    ctx = CollectContext(
        writer.root, writer.journal, engine, Options(only=("packages",)), log=_Log()
    )
    try:
        collector = PackagesCollector()
        collector.root = os.fsencode(root)
        collector.collect(ctx)
    finally:
        engine.shutdown()
        writer.journal.close()
    ran = [r["engine"] for r in journal_records(writer.root) if r.get("event") == "md5-engine"]
    return (writer.root / "artifacts/packages/integrity.json").read_bytes(), ran


@needs_lanes
def test_integrity_json_the_same_with_lanes_and_hashlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "host"
    _dpkg_tree(root)
    outputs = {}
    for engine in ["hashlib", *_md5lanes.engines()]:
        monkeypatch.setenv("PRESERVE_MD5_ENGINE", engine)
        (tmp_path / engine).mkdir()
        outputs[engine], ran = _integrity(tmp_path / engine, root)
        assert ran == [engine]
    report = json.loads(outputs["hashlib"])
    assert len(report["modified"]) >= 10 and len(report["missing"]) >= 6
    assert len(report["conffiles_changed"]) == 3
    assert all(out == outputs["hashlib"] for out in outputs.values())


@needs_lanes
@requires_root
@pytest.mark.parametrize("whole", [False, True])
def test_the_real_dpkg_database_in_a_private_namespace(tmp_path: Path, whole: bool) -> None:
    """``preserve --only packages`` on this host's packages (a few, bind-mounted as the
    whole database in a private mount namespace, or all of them: the forked children's
    check in C on ~100,000 files), one binary trojaned there: the same integrity.json
    with lanes as with hashlib, and the journal names the engine."""
    names = [p for p in ("coreutils", "libc6", "bash", "util-linux", "python3.11-minimal")
             if Path(f"/var/lib/dpkg/info/{p}.md5sums").exists()]  # fmt: skip
    for arch in ("", ":amd64"):
        if Path(f"/var/lib/dpkg/info/libc6{arch}.md5sums").exists() and "libc6" not in names:
            names.append(f"libc6{arch}")
    if shutil.which("unshare") is None or "coreutils" not in names:
        pytest.skip("no dpkg database with coreutils here")
    info = tmp_path / "info"
    info.mkdir()
    for name in names:
        for ext in ("md5sums", "list"):
            src = Path(f"/var/lib/dpkg/info/{name}.{ext}")
            if src.exists():
                shutil.copy(src, info / src.name)
    trojan = tmp_path / "true"
    trojan.write_bytes(Path("/usr/bin/true").read_bytes() + b"implant")
    argv = " ".join(f"'{a}'" for a in PRESERVE_ARGV)
    engines = ["hashlib", _md5lanes.engines()[0]]
    runs = " && ".join(
        f"PRESERVE_MD5_ENGINE={e} {argv} --json -o {tmp_path / e} --only packages"
        f" > {tmp_path / e}.json"
        for e in engines
    )
    mounts = f"mount --bind {trojan} /usr/bin/true"
    if not whole:
        mounts += f" && mount --bind {info} /var/lib/dpkg/info"
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{mounts} && {runs}"],
        capture_output=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    reports = {}
    for engine in engines:
        evidence = Path(json.loads((tmp_path / f"{engine}.json").read_bytes())["evidence_dir"])
        reports[engine] = (evidence / "artifacts/packages/integrity.json").read_bytes()
        ran = [r["engine"] for r in journal_records(evidence) if r.get("event") == "md5-engine"]
        assert ran == [engine]
    assert reports[engines[0]] == reports[engines[1]]
    modified = [r["path"] for r in json.loads(reports[engines[1]])["modified"]]
    assert any(p.endswith("bin/true") for p in modified)
