"""The background hash of large copies: same digest as hashing inline, buffers never
overwritten while the helper thread still reads them."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from evidence_factory import new_writer

from collectors.copy import CopyEngine
from collectors.overlap import OVERLAP_FROM, BackgroundHash, InlineHash, hash_for
from manifests.digest import CHUNK
from manifests.sink import LocalFile


def test_rotating_buffers_gives_the_inline_digest_and_copy(tmp_path: Path) -> None:
    """Each buffer is refilled as soon as ready_to_reuse returns: if it returned early,
    the helper threads would hash or write the next chunk's bytes and the digest or the
    copy would differ."""
    chunks = [os.urandom(CHUNK) for _ in range(24)]
    bufs = [bytearray(CHUNK) for _ in range(BackgroundHash.buffers)]
    h = BackgroundHash()
    out = LocalFile(os.open(tmp_path / "copy", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        for k, data in enumerate(chunks):
            h.ready_to_reuse()
            buf = bufs[k % len(bufs)]
            buf[:] = data
            h.update(memoryview(buf))
            h.write(out, memoryview(buf))
        h.settle()
        digest = h.hexdigest()
    finally:
        h.close()
        out.close()
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert (tmp_path / "copy").read_bytes() == b"".join(chunks)


def test_large_copies_hash_on_a_helper_thread_small_ones_inline() -> None:
    assert isinstance(hash_for(OVERLAP_FROM), BackgroundHash)
    assert isinstance(hash_for(OVERLAP_FROM - 1), InlineHash)
    # A remote sink's write is a pipe write: no hand-off to helper threads for it.
    assert isinstance(hash_for(OVERLAP_FROM * 8, local=False), InlineHash)


def test_a_large_file_is_stored_and_hashed_exactly(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(OVERLAP_FROM * 3 + 12345)  # several chunks and a short last one
    src.write_bytes(data)
    writer = new_writer(tmp_path / "out")
    engine = CopyEngine(writer)
    before = threading.active_count()
    record = engine.preserve(bytes(src), "artifacts/big.bin", "files")
    engine.shutdown()
    assert record is not None
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert (writer.root / "artifacts/big.bin").read_bytes() == data
    assert threading.active_count() <= before  # the helper thread ended with the copy
