"""``preserve [OPTIONS]``: the collection itself."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from collectors.base import Collector
from collectors.clock import parse_reference_time
from collectors.context import Options
from collectors.logprofile import Profile, load_profile
from collectors.registry import load_collectors
from collectors.ruleset import load_rules
from manifests.errors import EvidenceLostError, OutputError, UsageError
from manifests.signing import Signer, grouped

from .. import preflight
from ..console import Console
from ..imaging import cli as image_cli
from ..isolation import cli as isolation_cli
from ..isolation.dryrun import show_dry_run
from ..keys import load_signer
from ..kit import OVERRIDE_FLAG, KitCheck, gate, verify_command
from ..orchestrator import RunConfig, RunOutcome, run
from ..outputdisk import fixed_disk_of
from ..params import ByteSize, Duration, SizeOrOff, apply_options, split_names
from ..selfhash import code_sha256
from ..sinks import SftpTarget, dial, open_destination
from ..stopsignals import StopGuard
from ._run_options import MODE_OPTIONS, OUTPUT_OPTIONS
from .run_checks import checked_output, checked_paths, inside


class _CollectorNamesOption(click.Option):
    """``--only``/``--skip``, whose help ends with the collectors installed: loaded from the
    entry points when the help is shown, not at import, so a plug-in is listed as soon as
    it is installed, and one the run would skip (broken) is not offered."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        flags, text = record
        names = sorted(load_collectors(lambda name, e: None))
        return flags, f"{text} Installed: {', '.join(names)}."


def collection_options(f: Any) -> Any:
    options = [
        *OUTPUT_OPTIONS,
        click.option(
            "--only",
            multiple=True,
            metavar="NAMES",
            cls=_CollectorNamesOption,
            help="Run only these collectors (comma-separated).",
        ),
        click.option(
            "--skip",
            multiple=True,
            metavar="NAMES",
            cls=_CollectorNamesOption,
            help="Do not run these collectors.",
        ),
        click.option(
            "--path",
            "paths",
            multiple=True,
            metavar="PATH",
            help="Also preserve this file or directory tree (repeatable).",
        ),
        click.option(
            "--max-file-size",
            type=ByteSize(),
            help="Record, but do not copy, files larger than this (e.g. 2G).",
        ),
        click.option(
            "--profile",
            metavar="NAME|FILE",
            help="Log sources to read: minimal, standard (default), full, or a .toml file.",
        ),
        click.option(
            "--rules",
            "rules_files",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="Also apply these finding rules (TOML, repeatable; a rule with a built-in "
            "rule's id replaces it). See docs/triage.md.",
        ),
        click.option(
            "--watch",
            type=Duration(),
            help="After collecting, keep preserving what logs append, rotate or lose, for "
            "this long (90, 90s, 15m, 2h; Ctrl-C ends it early).",
        ),
        click.option(
            "--collect-env",
            is_flag=True,
            help="Also record process environment variables (they often hold secrets).",
        ),
        click.option(
            "--reference-time",
            metavar="TIME",
            help="The time now on your own watch or phone (2026-12-01T20:15Z; UTC unless "
            "an offset is given): recorded, and the host clock's difference checked.",
        ),
        click.option(
            "--process-memory",
            type=SizeOrOff(),
            metavar="SIZE|off",
            help="Memory kept of each flagged process (default 256M; four times that in "
            "all), or off.",
        ),
        click.option(
            OVERRIDE_FLAG,
            "kit_modified_ok",
            is_flag=True,
            help="Run from a kit that failed its self-check (recorded in the journal).",
        ),
        *MODE_OPTIONS,
        *image_cli.OPTIONS,
        *isolation_cli.OPTIONS,
    ]
    return apply_options(f, options)


def _select(
    available: dict[str, type[Collector]], only: list[str], skip: list[str], paths: list[bytes]
) -> list[Collector]:
    unknown = sorted(set(only + skip) - set(available))
    if unknown:
        raise UsageError(
            f"unknown collector(s) {', '.join(unknown)}; known: {', '.join(sorted(available))}"
        )
    if only:
        names = list(dict.fromkeys(only))
    else:
        names = [n for n, c in available.items() if c.default]
        if paths and "files" in available:
            names.append("files")
    names = [n for n in names if n not in skip]
    if "files" in names and not paths:
        raise UsageError("the 'files' collector needs at least one --path")
    if not names:
        raise UsageError("no collector left to run; check --only and --skip")
    return [available[n]() for n in names]


def _signer(key: Path | None) -> Signer:
    return load_signer(key) if key else Signer.generate_ephemeral()


def _summary(console: Console, outcome: RunOutcome) -> None:
    c = outcome.counts
    rows = [
        ("Evidence", str(outcome.evidence_dir)),
        ("Status", outcome.status),
        ("Items", f"{c['stored']} stored, {c['skipped']} skipped, {c['failed']} failed"),
    ]
    if c["failed"]:
        rows.append(
            (
                "Failed items",
                "each is an 'error' record in custody.jsonl (reason "
                "included); the rest of the evidence is complete and sealed",
            )
        )
    rows += outcome.summary
    rows += [
        ("Signer fingerprint", grouped(outcome.fingerprint)),
        ("Chain head", outcome.chain_head),
        ("Check it with", verify_command(outcome.evidence_dir, outcome.fingerprint)),
    ]
    title = "preserve: evidence sealed. Write the two marked values on the custody form."
    console.box(title, rows, {"Signer fingerprint", "Chain head"})


def run_collection(
    output: Path | SftpTarget | None,
    case: str | None,
    examiner: str | None,
    note: str | None,
    key: Path | None,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    paths: tuple[str, ...],
    max_file_size: int | None,
    json_mode: bool,
    quiet: bool,
    debug: bool,  # agent/program.py shows tracebacks when --debug is given
    profile: str | None = None,
    watch: float | None = None,
    kit_modified_ok: bool = False,
    **extra: Any,
) -> int:
    console = Console(quiet=quiet, json_mode=json_mode)
    kit_check, start_fields = gate(kit_modified_ok)
    if kit_check is not None and kit_check.loader_warning():
        console.warn(kit_check.loader_warning() or "")
    if kit_check is not None and not kit_check.ok:
        console.warn(f"running a modified kit ({kit_check.summary()}); the journal records it")
    isolation = isolation_cli.prepare(extra, "preserve")
    if isolation is not None and isolation.dry:
        return show_dry_run(isolation, json_mode)
    output = checked_output(output)
    raw_paths = checked_paths(paths)
    # ssh is started now (a remote -o over OpenSSH, the pin and an unencrypted key): its
    # connection is made on the other core while the collectors load; until the
    # destination below holds it, anything that stops the run ends it too.
    early = dial(
        output,
        extra.get("sink_host_key"),
        extra.get("sink_key"),
        extra.get("sink_timeout"),
        extra.get("sink_transport") or "openssh",
    )
    try:
        warnings: list[str] = []
        available = load_collectors(lambda name, e: warnings.append(f"collector {name}: {e}"))
        log_profile: Profile = load_profile(profile)
        only_names = split_names(only) or list(log_profile.collectors or [])
        image = image_cli.prepare(extra, output, {"case": case, "examiner": examiner, "note": note})
        collectors = image.alone or _select(available, only_names, split_names(skip), raw_paths)
        collectors += image.stage
        names = [c.name for c in collectors]
        if watch is not None and watch <= 0:
            raise UsageError("--watch needs a positive duration such as 90s, 15m or 2h")
        if watch is not None and "logs" not in names and not raw_paths:
            raise UsageError("--watch follows log sources: run the logs collector or give --path")
        rules = load_rules(tuple(extra.get("rules_files") or ()))  # RulesError: exit 2
        options = Options(
            rules=rules,
            paths=tuple(raw_paths),
            max_file_size=max_file_size,
            collect_env=bool(extra.get("collect_env")),
            log_profile=log_profile,
            # --path trees belong to 'files' when it runs; otherwise (--only logs --path DIR)
            # they are extra log sources. Either way the watch follows them.
            log_paths=() if "files" in names else tuple(raw_paths),
            reference_time=(
                parse_reference_time(extra["reference_time"])
                if extra.get("reference_time")
                else None
            ),
            tool_built=str(kit_check.info.get("built") or "") or None if kit_check else None,
            only=tuple(split_names(only)),
            process_memory=extra.get("process_memory"),
        )
        for c in collectors:
            c.configure(options)
        for w in warnings:
            console.warn(f"{w} (plug-in skipped)")
        sources = raw_paths + [p for c in collectors for p in c.sources()]
        for source in sources:
            if isinstance(output, Path) and inside(output, source):
                raise UsageError(
                    f"the output {output} is inside {os.fsdecode(source)}, which is being "
                    "collected",
                    hint="choose an output outside it (the kit's drive)",
                )
        fixed = fixed_disk_of(output) if isinstance(output, Path) else None
        if fixed:
            console.warn(
                f"the output {output} is on {fixed}, a fixed disk of this host: writing there can "
                "overwrite deleted evidence; prefer the kit's drive or another removable disk"
            )
        if isolation is not None and not isinstance(output, Path):
            # No kit drive beside the evidence: the release state goes to /run (docs/remote.md).
            target = output
            isolation_cli.state_in_memory(
                isolation, lambda name: target.url(f"{target.path.rstrip('/')}/{name}")
            )
        # A remote sink is connected (host key pinned, fsync checked) before anything else.
        destination = open_destination(
            output,
            extra.get("sink_host_key"),
            extra.get("sink_key"),
            bool(extra.get("sink_no_fsync")),
            extra.get("sink_timeout"),
            extra.get("sink_reconnect"),
            extra.get("sink_transport") or "openssh",
            early,
            meanwhile=code_sha256,  # the start record's, read while ssh logs in
            on_retry=console.warn,
        )
    except BaseException:
        if early is not None:
            early.abort()
        raise
    if isolation is not None and destination.target is not None:
        isolation_cli.keep_reachable(isolation, destination.record["peer"], destination.target.port)
    profile_name = log_profile.name if "logs" in names else None
    plan = preflight.survey(collectors, profile_name, raw_paths, output, isolation)
    preflight.show(console, plan)
    signer = _signer(key)  # KeyLoadError: exit 2
    if watch:  # the file watcher (watchdog, inotify) is 20 ms of every start-up otherwise
        from ..watch import make_watch_hook  # (python -X importtime, bench/RESULTS.md)
    config = RunConfig(
        output=Path(str(output)),
        open_sink=destination.open_sink,
        signer=signer,
        collectors=collectors,
        options=options,
        case=case,
        examiner=examiner,
        note=note,
        argv=sys.argv,
        after_volatile=isolation,
        after_collect=make_watch_hook(watch, collectors, raw_paths) if watch else None,
        start_fields={
            **start_fields,
            **({"log_profile": log_profile.name} if "logs" in names else {}),
            **({"sink": destination.record} if destination.record else {}),
        },
        estimate=plan.estimate,
        stage_estimates=image_cli.estimates(collectors),
    )
    if signer.ephemeral:
        console.info(
            "no --key given: signing with an ephemeral key that is never stored; "
            f"its fingerprint is {grouped(signer.fingerprint)}"
        )
    with StopGuard() as guard, contextlib.closing(destination):
        try:
            outcome = _collect(config, console, guard, output)
        except EvidenceLostError as lost:
            # Sealed there if it came back; a Ctrl-C from now on ends the wait for it.
            ending = destination.after_loss(lost, signer, guard.since())
            if ending is lost:
                raise
            raise ending from lost
        outcome.extra["preflight"] = plan.to_json()
        _finish_outcome(outcome, kit_check, start_fields, console, json_mode)
    return outcome.exit_code


def _collect(
    config: RunConfig, console: Console, guard: StopGuard, output: Path | SftpTarget
) -> RunOutcome:
    try:
        return run(config, console, guard)
    except OSError as e:
        raise OutputError(
            f"cannot write evidence under {output}: {e.strerror or e}",
            hint="check the drive is mounted read-write and has space",
        ) from e


def _finish_outcome(
    outcome: RunOutcome,
    kit_check: KitCheck | None,
    start_fields: dict[str, Any],
    console: Console,
    json_mode: bool,
) -> None:
    """The closing box (or the JSON object), still under the stop guard: a late second
    Ctrl-C must not cost the responder the fingerprint and chain head to write down."""
    if kit_check is not None:
        state = "self-check ok" if kit_check.ok else "MODIFIED, run with the override"
        outcome.extra["kit"] = start_fields["kit"]
        outcome.summary.add(
            "Kit", f"{kit_check.info.get('version')} ({state}; sums {kit_check.sums_sha256})"
        )
    if json_mode:
        click.echo(json.dumps(outcome.to_json(), sort_keys=True))
    else:
        _summary(console, outcome)
