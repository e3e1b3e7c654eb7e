"""The one error family of the tool, kept in the bottom layer so that ``manifests``,
``collectors`` and ``agent`` can all raise it (this package imports nothing above it).

Every error carries the exit code the contract gives it (``DESIGN.md``, "Exit codes") and
a one-line ``hint``: what to do next. The library raises; the command line turns the error
into one line, ``error: <message>; <hint>``, and that exit code, in one place
(``agent/program.py``, used by both ``preserve`` and ``verify``), with a traceback only
under ``--debug``.

The family, grouped by origin (the leaves live beside the code that raises them):

- ``UsageError`` (exit 2): configuration or usage; found before anything was done.
  ``ProfileError`` (collectors/logprofile.py), ``AllowError`` and ``MethodError``
  (agent/isolation), ``DeadlinesError`` (agent/report), ``KitModifiedError`` (agent/kit.py).
- ``ManifestError``: the evidence and trust layer, here.
- ``OutputError`` (exit 1): what was asked for could not be written; ``OutputFull``
  (collectors/errors.py) is the full evidence drive, caught to seal what is stored.
- ``CollectorError`` (collectors/errors.py): a collector could not do its job; the run
  records it and goes on (exit 1).

Exit 4 (isolation asked for and not in effect) is not an error: a failed cut is
recorded and the collection goes on, so it is the run's outcome
(agent/isolation/engine.py). Ctrl-C, SIGTERM and SIGHUP end a run as ``Interrupted``
(agent/stopsignals.py), which stays a ``BaseException`` outside this family so that no
``except Exception`` can swallow it. ``EvidenceLostError`` (exit 3): the evidence
directory vanished under the run."""

from __future__ import annotations

from typing import ClassVar


class PreserveError(Exception):
    """Base class: ``str(e)`` says what happened, ``hint`` what to do next, and
    ``exit_code`` is what the process exits with when nothing handles it earlier."""

    exit_code: ClassVar[int] = 1
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def diagnostics(self) -> str:
        """The message and, after it, what to do next: one line for the user."""
        return f"{self}; {self.hint}" if self.hint else str(self)


def describe(error: BaseException) -> str:
    """One line for any error: a PreserveError in its own words; anything else (a bug)
    with its type, which is what a maintainer needs first."""
    if isinstance(error, PreserveError):
        return error.diagnostics()
    return f"{type(error).__name__}: {error}"


class UsageError(PreserveError):
    """A usage or configuration problem, found before anything was done: exit 2."""

    exit_code = 2


class OutputError(PreserveError):
    """What was asked for could not be written where asked (the evidence drive, an -o
    file): exit 1."""


class ManifestError(PreserveError):
    """The evidence and trust layer: something about evidence, keys or the journal is
    wrong."""


class CanonicalError(ManifestError):
    """A journal line is not canonical JSON (RFC 8785) or has duplicate keys."""


class KeyLoadError(ManifestError):
    """A signing key could not be loaded (wrong passphrase, not Ed25519, unreadable): a
    usage error, exit 2."""

    exit_code = 2


class SignatureError(ManifestError):
    """A signature does not verify against the expected key."""


class NotEvidenceError(ManifestError):
    """The directory given is not an evidence directory at all: exit 2."""

    exit_code = 2
    hint = "give the directory that 'preserve' created: OUTPUT/<host>-<time>"


class VerificationError(ManifestError):
    """The evidence does not verify, or changed while it was being verified, so a
    command that adds to it refused: exit 1, as ``verify`` would."""


class JournalChangedError(VerificationError):
    """A journal read again, or about to be appended to, is not the one that was verified."""

    hint = "make sure nobody else is writing to the evidence, then run again"


class EvidenceLostError(ManifestError):
    """The evidence directory vanished under the run (deleted, replaced, drive pulled):
    exit 3. Nothing is recreated: a recreated tree would hold orphan files and no
    journal."""

    exit_code = 3
    hint = (
        "nothing more was written and nothing was recreated; if the drive was pulled, "
        "plug it back in and run 'verify' on the directory (its last seal holds)"
    )

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"the evidence directory {location} was lost: {reason}")
        self.location = location
        self.reason = reason
