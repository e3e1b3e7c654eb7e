"""``preserve release``: undo an isolation this tool applied, from its saved state.

Works from any shell: the release plan is read from the kit (``-o OUTPUT`` or
``--state FILE``). With neither, or when no saved state is found, the host is searched
for this tool's own nftables table and iptables chains, which are removed by name.
``--evidence DIR --key KEY`` appends the release to that evidence's custody journal and
seals it with KEY; when KEY is not the key that holds the evidence (the collection's key
was ephemeral and is gone), a ``transfer`` to the releasing responder comes first, so
``verify`` still accepts every seal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from manifests.clock import utc_from_ns
from manifests.errors import JournalChangedError, UsageError, VerificationError
from manifests.signing import Signer
from manifests.transfer import Handover, append_under_custody
from manifests.verify import VerificationResult, verify_evidence

from ..isolation import iptables as ipt
from ..isolation import nftables as nft
from ..isolation import state as state_mod
from ..isolation.base import Runner, Step, have
from ..keys import load_signer
from ._output import output_option


def _found_on_host(runner: Runner) -> list[Step]:
    """Release steps for this tool's own rules, found by their names on the host."""
    steps: list[Step] = []
    if have("nft") and runner.output(["nft", "list", "table", "inet", nft.TABLE], "search"):
        steps.append(Step(["nft", "delete", "table", "inet", nft.TABLE]))
    if have("iptables"):
        for tool in ipt.TOOLS.values():
            if runner.output([tool, "-w", "5", "-S", ipt.CHAINS["INPUT"]], "search") is not None:
                steps += [s for s in ipt.release_steps(tolerate=True) if s.argv[0] == tool]
    return steps


def _hinted() -> list[tuple[Path | None, dict[str, Any]]]:
    """No -o: this tool's rules on the host name their state file on the kit."""
    runner = Runner()
    listing = ""
    if have("nft"):
        listing += runner.output(["nft", "list", "table", "inet", nft.TABLE], "search") or ""
    for tool in ipt.TOOLS.values():
        if have(tool):
            listing += runner.output([tool, "-w", "5", "-S", ipt.CHAINS["INPUT"]], "search") or ""
    found = state_mod.find_hint(listing)
    if found is None:
        return []
    try:
        saved = state_mod.load(Path(found))
    except (OSError, ValueError):
        return []
    return [(Path(found), saved)] if saved.get("status") in state_mod.IN_FORCE else []


def _targets(
    output: Path | None, state_file: Path | None, evidence: Path | None
) -> list[tuple[Path | None, dict[str, Any]]]:
    if state_file is not None:
        try:
            return [(state_file, state_mod.load(state_file))]
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read --state {state_file}: {e}") from e
    search = output or (evidence.parent if evidence else None)
    found: list[tuple[Path | None, dict[str, Any]]] = []
    found += state_mod.find_in_force(search) if search else _hinted()
    if evidence is not None:
        mine = [(p, s) for p, s in found if Path(s.get("evidence_dir", "")) == evidence.resolve()]
        found = mine or found
    return found


@click.command("release")
@output_option(
    "The kit's output directory given to 'preserve -o' (its saved states are searched).",
    directory=True,
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="One saved state file (OUTPUT/.preserve-isolation/NAME.json).",
)
@click.option(
    "--evidence",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Append the release to this evidence directory's custody journal (needs --key).",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Signing key for the --evidence journal entry.",
)
@click.option("--examiner", metavar="NAME", help="Who releases (recorded with --evidence).")
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on stdout.")
def release(
    output: Path | None,
    state_file: Path | None,
    evidence: Path | None,
    key: Path | None,
    examiner: str | None,
    json_mode: bool,
) -> None:
    """Undo the network isolation that 'preserve --isolate' applied.

    With --key, the release is also recorded in the evidence of the collection that made
    the cut (found from its saved state), as --evidence does."""
    if evidence is not None and key is None:
        raise UsageError(
            "--evidence needs --key: the release is sealed into the journal with that key"
        )
    runner = Runner()
    targets = _targets(output, state_file, evidence)
    released = [(p, s) for p, s in targets if s.get("status") == "released"]
    targets = [(p, s) for p, s in targets if s.get("status") != "released"]
    if not targets and not _found_on_host(runner):
        search = output or (evidence.parent if evidence else None)
        if not released and search:
            released = list(state_mod.find_released(search))
        if released:
            _already_released(released[0], json_mode)
            return
    implied = evidence is None and key is not None
    if implied:
        evidence = _evidence_of(targets)
    signer = None
    result = None
    if evidence is not None:
        result = verify_evidence(evidence)
        signer = load_signer(key)  # type: ignore[arg-type]
        if not result.ok and implied:
            click.echo(
                f"warning: {evidence} does not verify: the release is not recorded in it "
                f"(run 'verify {evidence}')",
                err=True,
            )
            evidence = None
        elif not result.ok:
            raise VerificationError(
                f"{evidence} does not verify, so nothing was appended",
                hint=f"run 'verify {evidence}' (the isolation was left in force)",
            )
    done: list[dict[str, Any]] = []
    failures: list[str] = []
    if not targets:
        steps = _found_on_host(runner)
        if not steps:
            raise UsageError(
                "no isolation in force found here (no saved state under -o/--state, and no "
                f"table inet {nft.TABLE} or preserve-* chains on this host)"
            )
        targets = [(None, {"method": "found on host", "release": [s.to_dict() for s in steps]})]
    for path, saved in targets:
        here = state_mod.where()
        if path is not None and any(saved.get(k) not in (None, v) for k, v in here.items()):
            failures.append(
                f"{path} belongs to host {saved.get('hostname')} (netns {saved.get('netns')}); "
                "run the release there"
            )
            continue
        steps = [Step.from_dict(s) for s in saved["release"]]
        start = len(runner.records)
        problems = runner.run_all(steps, "release")
        failures += problems
        if path is not None:
            saved.update(
                status="released" if not problems else "release-failed",
                released=utc_from_ns(time.time_ns()),
                release_results=runner.records[start:],
            )
            state_mod.save(path, saved)
        done.append(
            {
                "state_file": str(path) if path else None,
                "method": saved.get("method"),
                "commands": runner.records[start:],
                "failures": problems,
            }
        )
    if evidence is not None and signer is not None and result is not None:
        _append(evidence, signer, result, done, examiner)
    if json_mode:
        recorded = str(evidence) if evidence is not None and signer is not None else None
        click.echo(
            json.dumps(
                {"released": done, "ok": not failures, "recorded_in": recorded}, sort_keys=True
            )
        )
    else:
        for item in done:
            click.echo(f"released: {item['method']} ({item['state_file'] or 'found on host'})")
        if evidence is not None and signer is not None:
            click.echo(f"recorded in the evidence: {evidence}")
        elif key is None and _evidence_of(targets) is not None:
            click.echo(
                "not recorded in the evidence: give --key to seal the release into "
                f"{_evidence_of(targets)}",
                err=True,
            )
        for failure in failures:
            click.echo(f"error: {failure}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


def _already_released(target: tuple[Path | None, dict[str, Any]], json_mode: bool) -> None:
    """A second release changes nothing and is not an error: say when the first one was."""
    path, saved = target
    when = saved.get("released", "an unrecorded time")
    if json_mode:
        click.echo(
            json.dumps(
                {"released": [], "ok": True, "already_released": when, "state_file": str(path)},
                sort_keys=True,
            )
        )
    else:
        click.echo(f"already released at {when} ({saved.get('method')}, {path})")


def _evidence_of(targets: list[tuple[Path | None, dict[str, Any]]]) -> Path | None:
    """The evidence directory of the collection that made the cut, if it is at hand."""
    dirs = {s.get("evidence_dir") for _, s in targets if s.get("evidence_dir")}
    if len(dirs) != 1:
        return None
    path = Path(str(dirs.pop()))
    return path if path.is_dir() else None


def _append(
    evidence: Path,
    signer: Signer,
    result: VerificationResult,
    done: list[dict[str, Any]],
    examiner: str | None,
) -> None:
    """Record the release in the evidence; a key that does not hold it is handed it first,
    so ``verify`` still accepts every seal."""
    handover = None
    if result.holders[-1].fingerprint != signer.fingerprint:
        handover = Handover(
            examiner or "responder who released the isolation",
            "network isolation released; signed by the releasing responder's key",
        )
    records: list[tuple[str, dict[str, Any]]] = []
    for item in done:
        records += [
            ("action", {"action": "isolation-release-command", **r}) for r in item["commands"]
        ]
        records.append(
            (
                "action",
                {
                    "action": "isolation-released",
                    "method": item["method"],
                    "state_file": item["state_file"],
                    "failures": item["failures"],
                    "examiner": examiner,
                },
            )
        )
    try:
        append_under_custody(evidence, result, signer, "isolation released", handover, records)
    except JournalChangedError as e:
        raise JournalChangedError(f"{e} (the isolation itself was released)", hint=e.hint) from e
