"""Errors a collector may raise to the orchestrator."""


class CollectorError(Exception):
    """A collector could not run at all; the reason is recorded and the run goes on."""


class OutputFull(Exception):
    """The evidence drive is full: stop collecting, seal what is stored."""
