"""One collection run, start to seal.

Stages run in order of volatility; after each stage the journal is sealed, so a run that
dies later still leaves its earlier stages signed. A full disk, Ctrl-C or SIGTERM ends
collection early but still closes the directory properly: the run log is stored,
``SHA256SUMS`` and the manifest are written, and the last seal covers everything."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.base import Collector, Stage
from collectors.context import CollectContext, Options
from collectors.copy import CopyEngine
from collectors.errors import OutputFull
from collectors.hostinfo import identity, safe_hostname
from collectors.summary import Summary
from manifests import layout
from manifests.clock import compact_stamp, utc_from_ns
from manifests.errors import EvidenceLostError, describe
from manifests.signing import Signer, public_key_to_raw_b64
from manifests.sink import Sink
from manifests.writer import EvidenceWriter

from . import __version__
from .alongside import Alongside
from .console import Console, Estimate, printable
from .runlog import RunLog
from .selfhash import code_sha256
from .stopsignals import Interrupted, StopGuard

STAGE_TITLES = {"volatile": "volatile state", "slow": "files and logs", "image": "disk image"}
MAX_ERROR_LINES = 10


@dataclass
class RunConfig:
    output: Path
    signer: Signer
    collectors: list[Collector]
    options: Options
    case: str | None = None
    examiner: str | None = None
    note: str | None = None
    argv: list[str] = field(default_factory=list)
    # Called after the volatile stage is sealed (network isolation); adds its rows to
    # ctx.summary, returns its --json fields and an exit code (0, or 4 when isolation did
    # not take effect).
    after_volatile: Callable[[CollectContext, Console], tuple[dict[str, Any], int]] | None = None
    # Called after the slow stage (the --watch loop); adds rows to ctx.summary, returns
    # its --json fields.
    after_collect: Callable[[CollectContext, Console], dict[str, Any]] | None = None
    start_fields: dict[str, Any] = field(default_factory=dict)
    # What the pre-flight scan expects the files-and-logs stage to read (the progress).
    estimate: Estimate | None = None
    # The same for other stages (the disk image: its size), by stage.
    stage_estimates: dict[Stage, Estimate] = field(default_factory=dict)
    # Makes the evidence directory somewhere else than under ``output`` (agent.sinks).
    open_sink: Callable[[str], Sink] | None = None


@dataclass
class RunOutcome:
    evidence_dir: Path | str  # a str for an sftp:// URL (a Path would fold its '//')
    fingerprint: str
    status: str
    exit_code: int
    counts: dict[str, int]
    chain_head: str
    started: str
    ended: str
    extra: dict[str, Any] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)

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
            **({"summary_rows": self.summary.to_json()} if self.summary else {}),
            "degraded": self.summary.degraded,
            **self.extra,
        }


def _stages(collectors: list[Collector]) -> list[tuple[Stage, list[Collector]]]:
    """The stages that have collectors, in order of volatility, each sorted by ``order``."""
    grouped = [
        (s, sorted((c for c in collectors if c.stage is s), key=lambda c: c.order)) for s in Stage
    ]
    return [(s, members) for s, members in grouped if members]


def _argv_text(argv: list[str]) -> list[str]:
    return [os.fsencode(a).decode("utf-8", "backslashreplace") for a in argv]


def run(config: RunConfig, console: Console, guard: StopGuard) -> RunOutcome:
    """Collect, then seal. ``guard`` (installed by the caller, for as long as it still
    has something to say, such as the closing box) turns stop signals into a sealed end."""
    started_ns = time.time_ns()
    writer = EvidenceWriter.create(
        config.output, f"{safe_hostname()}-{compact_stamp()}", config.signer, config.open_sink
    )
    root, journal = writer.root, writer.journal
    # Where it is, as people and scripts should read it: a path, or an sftp:// URL.
    where = writer.sink.location if "://" in writer.sink.location else os.fsdecode(root)
    runlog = RunLog(writer.sink.create(layout.LOG, append=True))
    log = runlog.logger
    engine = CopyEngine(writer, config.options.max_file_size)
    guard.on_stop = engine.stopped.set
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
                    ": ".join(str(p) for p in (record["collector"], source) if p)
                    + f": {record['reason']} (recorded at seq {record['seq']})"
                )
            )
        elif shown_errors == MAX_ERROR_LINES + 1:
            console.warn("more items failed; each one is an 'error' record in custody.jsonl")

    engine.on_error = show_error
    ctx = CollectContext(root, journal, engine, config.options, log)
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
        evidence_dir=where,
        output_file_system=writer.file_system.name,  # what it can store: FAT32, no 4 GiB file
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
    stopped_by: str | None = None
    exit_code = 0
    extra: dict[str, Any] = {}
    isolated = False
    ran: list[str] = []

    def isolate() -> None:
        nonlocal number, extra, exit_code, isolated
        isolated = True
        number += 1
        console.stage(number, total, "network isolation")
        extra, exit_code = config.after_volatile(ctx, console)  # type: ignore[misc]
        journal.seal("after isolation")
        guard.check()

    try:
        guard.check()  # a signal while the directory was being made stops here
        for stage, members in stages:
            # No volatile collector selected: isolate before the slow stage all the same.
            if stage != "volatile" and config.after_volatile and not isolated:
                isolate()
            number += 1
            console.stage(number, total, STAGE_TITLES.get(stage, stage))
            console.start_progress(
                lambda: (engine.counters.stored, engine.read.total),
                config.estimate if stage is Stage.SLOW else config.stage_estimates.get(stage),
            )
            alongside = Alongside()
            try:
                for collector in members:
                    if collector.alongside:
                        alongside.start(collector.name, _bind(collector, ctx, console))
                    else:
                        _run_collector(collector, ctx, console)
                    ran.append(collector.name)
                    if engine.full.is_set():
                        raise OutputFull()
                    guard.check()
                alongside.wait()
                if engine.full.is_set():  # a collector alongside filled it: as in its turn
                    raise OutputFull()
            finally:
                alongside.wait(reraise=False)  # a stage ends only when all of it has
                console.stop_progress()
            journal.seal(f"after stage {stage}")
            if stage == "volatile" and config.after_volatile:
                isolate()
        if config.after_volatile and not isolated:
            isolate()
        if config.after_collect:
            number += 1
            console.stage(number, total, "watching")
            extra.update(config.after_collect(ctx, console))
            if engine.full.is_set():  # the watch ended for it
                raise OutputFull()
    except OutputFull:
        status = "stopped: output disk full"
        for collector in config.collectors:
            if collector.name not in ran:
                engine.record_not_run(collector.name)
        console.error(
            "the output drive is full. What was stored is being sealed now; "
            "use a larger drive and run again for the rest."
        )
        if config.after_volatile and not isolated:
            # A full drive ends the collection, never the cut: isolate all the same.
            with contextlib.suppress(Interrupted):
                isolate()
    except EvidenceLostError:
        _abandon(writer, engine, runlog)
        raise
    except (KeyboardInterrupt, Interrupted) as e:
        status = "interrupted"
        engine.stopped.set()
        stopped_by = e.signame if isinstance(e, Interrupted) else "SIGINT"
        engine.record_error("preserve", None, f"collection interrupted ({stopped_by})")
        console.error("interrupted: sealing what was collected so far, please wait")
    if config.after_volatile and not isolated:
        exit_code = 4
        ctx.summary.add(
            "Isolation",
            "NOT APPLIED: the run stopped before the cut; cut the network now "
            "(preserve --isolate --only system, or by hand)",
        )
        console.error("isolation was asked for and was NOT applied: the run stopped before it")
    console.stage(total, total, "sealing")
    try:
        ended, chain_head = _finish(
            writer, engine, runlog, config, status, start["time"], stopped_by
        )
    except EvidenceLostError:
        _abandon(writer, engine, runlog)
        raise
    counts = engine.counters.as_dict()
    if exit_code == 0 and (counts["failed"] or status != "complete"):
        exit_code = 1
    return RunOutcome(
        root if where == os.fsdecode(root) else where,
        config.signer.fingerprint,
        status,
        exit_code,
        counts,
        chain_head,
        utc_from_ns(started_ns),
        ended,
        extra,
        ctx.summary,
    )


def _bind(collector: Collector, ctx: CollectContext, console: Console) -> Callable[[], None]:
    """``collector``'s run for its own thread, prepared here, in the stage's thread, so
    that what it hands on is there before the next collector of the stage starts."""
    try:
        collector.prepare(ctx)
    except (OutputFull, EvidenceLostError, KeyboardInterrupt, Interrupted, MemoryError):
        raise
    except Exception as e:  # run in its thread, where it fails as it would in collect
        failure = e

        def fail(_: CollectContext) -> None:
            raise failure

        return lambda: _run_collector(collector, ctx, console, fail)
    return lambda: _run_collector(collector, ctx, console, collector.collect)


def _run_collector(
    collector: Collector,
    ctx: CollectContext,
    console: Console,
    collect: Callable[[CollectContext], None] | None = None,
) -> None:
    """Run ``collector`` (its ``prepare`` then ``collect``, or only ``collect``: the one
    given, already prepared) and journal how long it took."""
    began = time.monotonic_ns()
    ctx.log.info("collector_started", collector=collector.name)
    try:
        if collect is None:
            collector.prepare(ctx)
            collect = collector.collect
        collect(ctx)
        ctx.engine.drain()
        ctx.engine.raise_if_lost()
    except (OutputFull, EvidenceLostError, KeyboardInterrupt, Interrupted, MemoryError):
        raise
    except Exception as e:  # one broken collector must not lose the others' evidence
        ctx.engine.drain()
        # A CollectorError in its own words (message; hint); anything else, a bug, by type.
        ctx.error(collector.name, f"collector failed: {describe(e)}")
        ctx.log.exception("collector_failed", collector=collector.name)
    took = time.monotonic_ns() - began
    ctx.journal.append("collector", name=collector.name, duration_ns=str(took))
    ctx.log.info("collector_finished", collector=collector.name, duration_ms=took // 1_000_000)


def _abandon(writer: EvidenceWriter, engine: CopyEngine, runlog: RunLog) -> None:
    """The evidence directory is gone: stop every copy and let go of it at once. Nothing
    can be sealed where it was, and nothing is recreated."""
    engine.stopped.set()
    engine.drain()
    engine.shutdown()
    runlog.close()
    writer.abandon()


def _finish(
    writer: EvidenceWriter,
    engine: CopyEngine,
    runlog: RunLog,
    config: RunConfig,
    status: str,
    started: str,
    stopped_by: str | None,
) -> tuple[str, str]:
    """Close the directory: after this, every file in it is accounted for and signed."""
    engine.drain()
    engine.shutdown()
    engine.close_untried()
    runlog.logger.info("run_finished", status=status, **engine.counters.as_dict())
    runlog.close()
    log_hash, log_size = writer.hash_stored(layout.LOG)
    writer.append(
        "artifact",
        collector="preserve",
        path=layout.LOG,
        size=log_size,
        sha256=log_hash,
        kind="collection-log",
        dropped_lines=runlog.writer.dropped,
    )
    ended = utc_from_ns(time.time_ns())
    counts = engine.counters.as_dict()
    chain_head = writer.close(
        status,
        counts,
        {
            "tool": {"name": "preserve", "version": __version__, "code_sha256": code_sha256()},
            "case": config.case,
            "examiner": config.examiner,
            "host": identity()["hostname"],
            "started": started,
            "ended": ended,
            "status": status,
            "counts": counts,
        },
        **({"stopped_by": stopped_by} if stopped_by else {}),
    )
    return ended, chain_head
