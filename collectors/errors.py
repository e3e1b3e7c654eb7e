"""The collection branch of the error family (manifests/errors.py)."""

from manifests.errors import OutputError, PreserveError


class CollectorError(PreserveError):
    """What a collector raises from ``collect()`` when it cannot do its job. The
    orchestrator records it as an ``error`` record in its own words (message and hint),
    shows it as one line, and the run goes on with the other collectors: exit 1."""


class OutputFull(OutputError):
    """The evidence drive is full: stop collecting, seal what is stored (exit 1).

    Caught for flow control by the orchestrator; not a CollectorError, so that no
    collector's ``except CollectorError`` can swallow it."""

    def __init__(self) -> None:
        super().__init__("the output drive is full", hint="use a larger drive and run again")
