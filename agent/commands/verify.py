"""``verify EVIDENCE_DIR`` (also ``preserve verify``): is every byte as collected?"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from manifests.errors import KeyLoadError, UsageError
from manifests.signing import fingerprint_of, grouped, load_public_key_pem, normalise_fingerprint
from manifests.verify import VerificationResult, verify_evidence

from .. import __version__
from ..console import plural, printable
from ..kit import gate_verify
from ..program import run_program

EXIT_OK, EXIT_FAILED = 0, 1
# What an examiner does about each kind of file verdict (printed once per kind present).
NEXT_STEP = {
    "changed": "not the bytes collected: do not use it; take it from another copy of the evidence",
    "missing": "removed since the collection: take it from another copy of the evidence",
    "unexpected": "not part of the collection (put there afterwards): leave it out, and "
    "find out who could write to the directory",
    "incomplete": "a copy the run did not finish: not evidence; what the seals cover stands",
    "unsealed": "matches a record that no seal covers (a killed run's last copies, or "
    "records appended since): not evidence on its own",
}


def _pin(pubkey: Path | None, fingerprint: str | None) -> str | None:
    if pubkey and fingerprint:
        raise UsageError("give --pubkey or --fingerprint, not both")
    if pubkey:
        try:
            return fingerprint_of(load_public_key_pem(pubkey.read_bytes()))
        except (OSError, KeyLoadError) as e:
            raise UsageError(f"cannot use --pubkey {pubkey}: {e}") from e
    if fingerprint:
        try:
            return normalise_fingerprint(fingerprint)
        except ValueError as e:
            raise UsageError(
                f"--fingerprint: {e}", hint="copy it from the custody form (spaces are fine)"
            ) from e
    return None


def _chain_pin(chain_head: str | None) -> str | None:
    """The chain head as written on the custody form (spaces and case do not matter)."""
    if chain_head is None:
        return None
    try:
        return normalise_fingerprint(chain_head, "a chain head")
    except ValueError as e:
        raise UsageError(
            f"--chain-head: {e}", hint="copy it from the custody form (spaces are fine)"
        ) from e


def _echo(line: str) -> None:
    click.echo(printable(line))


def _degraded(result: VerificationResult) -> None:
    """The views the collection found disagreeing: not a verification failure (the
    evidence may be intact), but never left out of the summary."""
    if not result.degraded_count:
        return
    _echo(
        f"DEGRADED:  {plural(result.degraded_count, 'view')} of the host disagreed or could "
        "not be read during collection (recorded in the journal; the host may be hiding "
        "something):"
    )
    for d in result.degraded:
        seq = d.get("seq")
        unsealed = isinstance(seq, int) and (
            result.sealed_through is None or seq > result.sealed_through
        )
        _echo(
            f"  {str(d['severity']).upper()} {d['view']}: {d['reason']} (seq {seq}"
            + (", NOT covered by a seal)" if unsealed else ")")
        )
    if result.degraded_count > len(result.degraded):
        _echo(f"  ... and {result.degraded_count - len(result.degraded):,} more in the journal")


def report(result: VerificationResult, quiet: bool) -> None:
    problems = result.file_problems
    if not quiet:
        _echo(f"Evidence:  {result.evidence_dir}")
        for note in result.notes:
            _echo(f"Note:      {note}")
        if result.start:
            host = result.start.get("host")
            host = host.get("hostname") if isinstance(host, dict) else host
            _echo(
                f"Collected: {result.start.get('time')} on {host}, "
                f"case {result.start.get('case') or '-'}"
            )
        if result.signer_fingerprint:
            pin = {
                "matched": "pinned, matches",
                "mismatch": "DOES NOT MATCH the pinned key",
                None: "NOT PINNED: compare it with the custody form, or pass --fingerprint",
            }[result.pin]
            _echo(f"Signer:    {grouped(result.signer_fingerprint)} ({pin})")
        _echo(
            f"Journal:   {result.records} records, {len(result.seals)} valid seals, "
            f"sealed through seq {result.sealed_through}"
        )
        pinned = {
            "matched": " (pinned, matches the last seal)",
            "mismatch": " (DOES NOT MATCH the pinned head)",
            None: "",
        }[result.chain_pin]
        _echo(f"Chain head: {result.chain_head}{pinned}")
        _echo(f"Ended:     {result.how_it_ended}")
        _degraded(result)
        _echo("Custody:")
        for n, holder in enumerate(result.holders, 1):
            note = f"  note: {holder.note}" if holder.note else ""
            if holder.cosigned:
                note += "  (handover countersigned by the previous holder)"
            # The signer line above shows the collector's key; later holders' keys are
            # checked by nothing but the custody form, so they are shown in full.
            key = grouped(holder.fingerprint)
            _echo(
                f"  {n}. {holder.name}  since {holder.since}  key {key[:19] if n == 1 else key}"
                f"{'...' if n == 1 else ''}{note}"
            )
        if any(not h.cosigned for h in result.holders[1:]):
            _echo(
                "  (a transfer not countersigned is signed by its receiver alone, and only "
                "the collector's key is pinned: check each later holder's key against the "
                "custody form)"
            )
        _echo(
            f"Files:     {result.files_checked:,} checked, {result.files_ok:,} ok, "
            f"{plural(result.files_checked - result.files_ok, 'problem')}"
        )
        if result.pieces_checked:
            _echo(
                f"Image:     {result.pieces_checked} pieces checked, {result.pieces_ok} ok, "
                f"{result.pieces_checked - result.pieces_ok} damaged"
            )
    if quiet:  # -q prints problems only, but a degraded view is never quiet
        _degraded(result)
    for problem in result.problems:
        _echo(f"FAIL chain: {problem}")
    if len(result.after_chain_pin) > 3:  # the first three are in the problem itself
        for record in result.after_chain_pin:
            _echo(f"  after the pinned head: {record}")
    for f in problems:
        detail = f" ({f.detail})" if f.detail else ""
        _echo(f"FAIL {f.status}: {f.path}{detail}")
    kinds = {f.status for f in problems}
    if kinds and not quiet:
        _echo("What to do:")
        for status, step in NEXT_STEP.items():
            if status in kinds:
                _echo(f"  {status}: {step}")
    if result.ok and not quiet:
        _echo(f"OK: {result.evidence_dir} is intact ({result.how_it_ended})")
    elif not result.ok:
        _echo(
            f"FAIL: {result.evidence_dir}: "
            f"{plural(len(result.problems) + len(problems), 'problem')}"
        )


def verify_options(f):  # type: ignore[no-untyped-def]
    for option in reversed(
        [
            click.argument("evidence_dir", type=click.Path(path_type=Path)),
            click.option(
                "--pubkey",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Expected signer's public key (PEM).",
            ),
            click.option(
                "--fingerprint",
                metavar="HEX",
                help="Expected signer's fingerprint (64 hex digits).",
            ),
            click.option(
                "--chain-head",
                metavar="HEX",
                help="The chain head written on the custody form: it must be the head at "
                "the journal's last seal (anything appended after it is listed).",
            ),
            click.option("--json", "json_mode", is_flag=True, help="Machine-readable result."),
            click.option("-q", "--quiet", is_flag=True, help="Print only problems."),
        ]
    ):
        f = option(f)
    return f


def run_verify(
    evidence_dir: Path,
    pubkey: Path | None,
    fingerprint: str | None,
    chain_head: str | None,
    json_mode: bool,
    quiet: bool,
) -> int:
    pin = _pin(pubkey, fingerprint)
    head = _chain_pin(chain_head)
    # NotEvidenceError (none of the evidence files there): exit 2
    result = verify_evidence(evidence_dir, pin_fingerprint=pin, chain_head=head)
    if json_mode:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        report(result, quiet)
    return EXIT_OK if result.ok else EXIT_FAILED


@click.command("verify", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="verify")
@verify_options
def verify_command(**kwargs: object) -> None:
    """Check signatures, the custody chain and every file of an evidence directory."""
    sys.exit(run_verify(**kwargs))  # type: ignore[arg-type]


def main(args: list[str] | None = None, kit_override: bool = False) -> None:
    """The ``verify`` program; from a kit, only after the kit's own self-check."""
    run_program(verify_command, args, "verify", before=lambda: gate_verify(kit_override))
