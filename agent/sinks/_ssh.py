"""The one place ``asyncssh`` is imported, with ``ctypes.util.find_library`` disarmed.

At import, asyncssh looks for optional native libraries (nettle for UMAC, liboqs for
post-quantum key exchange) with ``ctypes.util.find_library``, which on Linux runs the
host's ``ldconfig -p`` and may run ``gcc``/``ld``: host programs, chosen by the host's
``PATH`` and caches, on a host we do not trust. For the length of the import it returns
None, so those optional algorithms are simply not offered (the kit needs neither) and
nothing is executed. The import's own warnings are silenced too: cryptography >= 51 warns
that DSA is deprecated as asyncssh's DSA module loads, a warning about a library's
internals that would otherwise land on the responder's terminal (the sink never offers
DSA). Every other module imports asyncssh from here."""

from __future__ import annotations

import ctypes.util
import threading
import warnings
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning

_lock = threading.Lock()


def _no_library(name: str) -> None:
    return None


def _import() -> Any:
    with _lock:
        saved = ctypes.util.find_library
        ctypes.util.find_library = _no_library  # type: ignore[assignment]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                import asyncssh
        finally:
            ctypes.util.find_library = saved
    return asyncssh


asyncssh = _import()
