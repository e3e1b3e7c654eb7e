"""One collection run, start to seal.

Stages run in order of volatility; after each stage the journal is sealed, so a run that
dies later still leaves its earlier stages signed. A full disk, Ctrl-C or SIGTERM ends
collection early but still closes the directory properly: the run log is stored,
``SHA256SUMS`` and the manifest are written, and the last seal covers everything."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine
from collectors.errors import OutputFull
from manifests import layout
from manifests.clock import utc_from_ns
from manifests.digest import sha256_path_nofollow
from manifests.durable import syncfs
from manifests.errors import describe
from manifests.journal import Journal
from manifests.signing import Signer, public_key_to_raw_b64

from . import __version__, evidence
from .console import Console, printable
from .hostinfo import identity
from .runlog import RunLog
from .selfhash import code_sha256

STAGE_TITLES = {"volatile": "volatile state", "slow": "files and logs"}
MAX_ERROR_LINES = 10


@dataclass
class RunConfig:
    output: Path
    signer: Signer
    collectors: list[Any]
    options: Options
    case: str | None = None
    examiner: str | None = None
    note: str | None = None
    argv: list[str] = field(default_factory=list)
    exclude: frozenset[tuple[int, int]] = frozenset()
    # Called after the volatile stage is sealed (network isolation); returns extra
    # summary rows and an exit code (0, or 4 when isolation did not take effect).
    after_volatile: Callable[[CollectContext, Console], tuple[dict[str, Any], int]] | None = None
    # Called after the slow stage (the --watch loop); returns extra summary rows.
    after_collect: Callable[[CollectContext, Console], dict[str, Any]] | None = None
    start_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    evidence_dir: Path
    fingerprint: str
    status: str
    exit_code: int
    counts: dict[str, int]
    chain_head: str
    started: str
    ended: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "evidence_dir": str(self.evidence_dir),
            "fingerprint": self.fingerprint,
            "status": self.status,
            "exit_code": self.exit_code,
            "counts": self.counts,
            "chain_head": self.chain_head,
            "started": self.started,
            "ended": self.ended,
            **self.extra,
        }


class _Interrupted(BaseException):
    """SIGTERM or SIGHUP; like KeyboardInterrupt, no ``except Exception`` may swallow it."""


def _raise_interrupt(signum: int, frame: object) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _stages(collectors: list[Any]) -> list[tuple[str, list[Any]]]:
    order = ["volatile", "slow"]
    grouped = {
        s: sorted((c for c in collectors if c.stage == s), key=lambda c: c.order) for s in order
    }
    return [(s, grouped[s]) for s in order if grouped[s]]


def _argv_text(argv: list[str]) -> list[str]:
    return [os.fsencode(a).decode("utf-8", "backslashreplace") for a in argv]


def run(config: RunConfig, console: Console) -> RunOutcome:
    started_ns = time.time_ns()
    root = evidence.create_evidence_dir(config.output)
    evidence.write_signer_pub(root, config.signer)
    runlog = RunLog(root / layout.LOG)
    log = runlog.logger
    journal = Journal.create(root / layout.JOURNAL, config.signer)
    engine = CopyEngine(root, journal, config.options.max_file_size)
    shown_errors = 0

    def show_error(record: dict[str, Any]) -> None:
        nonlocal shown_errors
        shown_errors += 1
        source = (record.get("source") or {}).get("path", "")
        log.warning(
            "item_failed",
            collector=record.get("collector"),
            source=source,
            reason=record["reason"],
            seq=record["seq"],
        )
        if shown_errors <= MAX_ERROR_LINES:
            # Host file names are hostile: no escape sequence may reach the terminal.
            console.warn(
                printable(
                    f"{record['collector']}: {source}: {record['reason']} "
                    f"(recorded at seq {record['seq']})"
                )
            )
        elif shown_errors == MAX_ERROR_LINES + 1:
            console.warn("more items failed; each one is an 'error' record in custody.jsonl")

    engine.on_error = show_error
    ctx = CollectContext(root, journal, engine, config.options, log, config.exclude)
    start = journal.append(
        "start",
        tool={
            "name": "preserve",
            "version": __version__,
            "code_sha256": code_sha256(),
            "python": sys.version.split()[0],
        },
        host=identity(),
        case=config.case,
        examiner=config.examiner,
        note=config.note,
        argv=_argv_text(config.argv),
        uid=os.getuid(),
        euid=os.geteuid(),
        evidence_dir=os.fsdecode(root),
        collectors=[c.name for c in config.collectors],
        signer={
            "fingerprint": config.signer.fingerprint,
            "public_key": public_key_to_raw_b64(config.signer.public_key),
            "ephemeral": config.signer.ephemeral,
        },
        **config.start_fields,
    )
    journal.seal("start", journal_only=True)
    log.info("run_started", evidence_dir=str(root), collectors=[c.name for c in config.collectors])

    stages = _stages(config.collectors)
    total = (
        len(stages) + 1 + (1 if config.after_volatile else 0) + (1 if config.after_collect else 0)
    )
    number = 0
    status = "complete"
    exit_code = 0
    extra: dict[str, Any] = {}
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    isolated = False

    def isolate() -> None:
        nonlocal number, extra, exit_code, isolated
        isolated = True
        number += 1
        console.stage(number, total, "network isolation")
        extra, exit_code = config.after_volatile(ctx, console)  # type: ignore[misc]
        journal.seal("after isolation")

    try:
        for stage, members in stages:
            # No volatile collector selected: isolate before the slow stage all the same.
            if stage != "volatile" and config.after_volatile and not isolated:
                isolate()
            number += 1
            console.stage(number, total, STAGE_TITLES.get(stage, stage))
            console.start_progress(lambda: (engine.counters.stored, engine.counters.bytes))
            try:
                for collector in members:
                    _run_collector(collector, ctx, console)
                    if engine.full.is_set():
                        raise OutputFull()
            finally:
                console.stop_progress()
            journal.seal(f"after stage {stage}")
            if stage == "volatile" and config.after_volatile:
                isolate()
        if config.after_volatile and not isolated:
            isolate()
        if config.after_collect:
            number += 1
            console.stage(number, total, "watching")
            watched = config.after_collect(ctx, console)
            rows = extra.get("summary_rows", []) + watched.pop("summary_rows", [])
            extra.update(watched, summary_rows=rows)
    except OutputFull:
        status = "stopped: output disk full"
        console.error(
            "the output drive is full. What was stored is being sealed now; "
            "use a larger drive and run again for the rest."
        )
    except (KeyboardInterrupt, _Interrupted) as e:
        status = "interrupted"
        engine.stopped.set()
        engine.record_error("preserve", None, f"collection interrupted ({e or 'SIGINT'})")
        console.error("interrupted: sealing what was collected so far, please wait")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.stage(total, total, "sealing")
    ended, chain_head = _finish(root, journal, engine, runlog, config, status, start["time"])
    counts = engine.counters.as_dict()
    if exit_code == 0 and (counts["failed"] or status != "complete"):
        exit_code = 1
    # Collectors may add closing-box rows too (e.g. the volatile snapshot's red flags).
    if ctx.shared.get("summary_rows"):
        extra["summary_rows"] = [*ctx.shared["summary_rows"], *extra.get("summary_rows", [])]
    return RunOutcome(
        root,
        config.signer.fingerprint,
        status,
        exit_code,
        counts,
        chain_head,
        utc_from_ns(started_ns),
        ended,
        extra,
    )


def _run_collector(collector: Any, ctx: CollectContext, console: Console) -> None:
    began = time.monotonic_ns()
    ctx.log.info("collector_started", collector=collector.name)
    try:
        collector.collect(ctx)
        ctx.engine.drain()
    except OutputFull:
        raise
    except (KeyboardInterrupt, _Interrupted, MemoryError):
        raise
    except Exception as e:  # one broken collector must not lose the others' evidence
        ctx.engine.drain()
        # A CollectorError in its own words (message; hint); anything else, a bug, by type.
        ctx.error(collector.name, f"collector failed: {describe(e)}")
        ctx.log.exception("collector_failed", collector=collector.name)
    took = time.monotonic_ns() - began
    ctx.journal.append("collector", name=collector.name, duration_ns=str(took))
    ctx.log.info("collector_finished", collector=collector.name, duration_ms=took // 1_000_000)


def _finish(
    root: Path,
    journal: Journal,
    engine: CopyEngine,
    runlog: RunLog,
    config: RunConfig,
    status: str,
    started: str,
) -> tuple[str, str]:
    """Close the directory: after this, every file in it is accounted for and signed."""
    ignore = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not tear the seal
    try:
        engine.drain()
        engine.shutdown()
        runlog.logger.info("run_finished", status=status, **engine.counters.as_dict())
        runlog.close()
        log_hash, log_size = sha256_path_nofollow(root / layout.LOG)
        journal.append(
            "artifact",
            collector="preserve",
            path=layout.LOG,
            size=log_size,
            sha256=log_hash,
            kind="collection-log",
            dropped_lines=runlog.writer.dropped,
        )
        sums_hash = evidence.write_sums(root, journal.hashed)
        journal.append("sums", path=layout.SUMS, sha256=sums_hash, entries=len(journal.hashed))
        ended = utc_from_ns(time.time_ns())
        counts = engine.counters.as_dict()
        journal.append("end", status=status, counts=counts)
        final = journal.seal("end")
        evidence.write_manifest(
            root,
            journal,
            final,
            {
                "format": "preserve-evidence/1",
                "tool": {"name": "preserve", "version": __version__, "code_sha256": code_sha256()},
                "case": config.case,
                "examiner": config.examiner,
                "host": identity()["hostname"],
                "started": started,
                "ended": ended,
                "status": status,
                "counts": counts,
                "sums_sha256": sums_hash,
            },
        )
        journal.close()
        syncfs(root)
        return ended, journal.head
    finally:
        signal.signal(signal.SIGINT, ignore)
