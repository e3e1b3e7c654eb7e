"""The ``preserve`` command: command line, orchestration and the responder's console."""

from importlib import metadata

try:
    __version__ = metadata.version("preserve")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
