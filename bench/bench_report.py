"""Report and export time and peak RSS against ``verify`` on the same evidence, measured
in the same run.

A report always runs the full verification first, so ``verify`` is its floor; the ratio
says what reading the journal, the findings, the timeline and rendering add on top.
With ``--own``, each report and export is also run with the verification replaced by a
read of the chain alone, so that its peak RSS is the report's (or export's) own.

Tree: ``--files`` small files (default 20,000; the issue-12 case is 200,000 or 1,000,000),
collected once with ``--only files --path``.
Usage: python bench/bench_report.py [WORKDIR] [--files N] [--rounds R] [--own]
(default WORKDIR: a directory under /var/tmp, removed afterwards)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PRESERVE, VERIFY, machine, timed  # noqa: E402

# Runs the CLI with verify_evidence replaced by a chain-only read (no file is hashed).
OWN = """
import sys
from pathlib import Path
import agent.commands.export as x
import agent.report.evidence as e
from manifests.journal_reader import ChainState, open_journal, read_chain
from manifests.verify import VerificationResult

def chain_only(d, pin_fingerprint=None, workers=None):
    r, state, n = VerificationResult(evidence_dir=str(d)), ChainState(), 0
    journal = Path(d) / "custody.jsonl"
    with open_journal(journal) as f:
        for rec in read_chain(f, state):
            r.start = rec if n == 0 else r.start
            n += 1
    r.records, r.chain_head, r.journal_path, r.sealed_through = n, state.head, str(journal), n - 1
    return r

e.verify_evidence = x.verify_evidence = chain_only
from agent._cli import main
main()
"""


def _tree(src: Path, files: int) -> None:
    pool = os.urandom(8192)
    for n in range(files):
        d = src / f"d{n // 500:04d}"
        if n % 500 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n:07d}.log").write_bytes(pool[: 256 + n % 4096])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--own", action="store_true")
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(dir="/var/tmp"))
    src, out = base / "src", base / "out"
    if not src.exists():
        _tree(src, args.files)
    if not out.exists():
        wall, _, rc = timed([*PRESERVE, "-q", "-o", out, "--only", "files", "--path", src])
        assert rc == 0, rc
        print(f"evidence: {args.files} files, collected in {wall:.2f} s")
    evidence = next(out.iterdir())
    print(f"machine: {machine()}")
    runs = {"verify": [*VERIFY, "-q", evidence]}
    for fmt, name in (("md", "r.md"), ("html", "r.html"), ("json", "r.json")):
        runs[f"report {fmt}"] = ["report", evidence, "--format", fmt, "-o", base / name]
    for fmt, name in (("case", "c.jsonld"), ("bodyfile", "b"), ("hashdeep", "h")):
        runs[f"export {fmt}"] = ["export", evidence, "--format", fmt, "-o", base / name]
    # Rounds outermost, so that verify and every command share the machine's changing
    # load (other work on a shared machine) rather than each meeting its own.
    times: dict[str, list[float]] = {name: [] for name in runs}
    peaks = dict.fromkeys(runs, 0)
    for _ in range(args.rounds):
        for name, argv in runs.items():
            t, rss, rc = timed(argv if name == "verify" else [*PRESERVE, *argv])
            assert rc == 0, (name, rc)
            times[name].append(t)
            peaks[name] = max(peaks[name], rss)
    base_time = statistics.median(times["verify"])
    for name, argv in runs.items():
        med = statistics.median(times[name])
        line = f"{name:>16}: {med:7.2f} s  ({med / base_time:4.2f} x verify)  "
        line += f"peak RSS {peaks[name]} MiB"
        if args.own and name != "verify":
            _, own, rc = timed([sys.executable, "-c", OWN, *map(str, argv)])
            assert rc == 0, (name, rc)
            line += f"  (own: {own} MiB)"
        print(line, flush=True)
    sizes = {p.name: p.stat().st_size for p in base.iterdir() if p.is_file()}
    print("output sizes: " + ", ".join(f"{k} {v // 1024} KiB" for k, v in sorted(sizes.items())))
    if args.workdir is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
