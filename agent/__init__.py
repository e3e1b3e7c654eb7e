"""The ``preserve`` command: command line, orchestration and the responder's console."""

from ._version import VERSION as __version__

__all__ = ["__version__"]
