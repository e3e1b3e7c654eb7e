"""The one place ``asyncssh`` is imported, with ``ctypes.util.find_library`` disarmed.

At import, asyncssh looks for optional native libraries (nettle for UMAC, liboqs for
post-quantum key exchange) with ``ctypes.util.find_library``, which on Linux runs the
host's ``ldconfig -p`` and may run ``gcc``/``ld``: host programs, chosen by the host's
``PATH`` and caches, on a host we do not trust. For the length of the import it returns
None, so those optional algorithms are simply not offered (the kit needs neither) and
nothing is executed. The import's own warnings are silenced too: cryptography >= 51 warns
that DSA is deprecated as asyncssh's DSA module loads, a warning about a library's
internals that would otherwise land on the responder's terminal (the sink never offers
DSA). Every other module gets asyncssh from ``load()``, and only the asyncssh transport
(and the frozen kit's pin probe) loads it: the OpenSSH transport, the default, runs
without it, some 50 ms less on the way to the first byte (bench/RESULTS.md).
``theirs`` names asyncssh's error classes for the checks that accept either
transport's, without loading it: none of its errors can exist before it is loaded."""

from __future__ import annotations

import ctypes.util
import sys
import threading
import warnings
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning

_lock = threading.Lock()


def _no_library(name: str) -> None:
    return None


def load() -> Any:
    """asyncssh, imported the first time it is asked for."""
    with _lock:
        if "asyncssh" in sys.modules:
            return sys.modules["asyncssh"]
        saved = ctypes.util.find_library
        ctypes.util.find_library = _no_library  # type: ignore[assignment]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                import asyncssh
        finally:
            ctypes.util.find_library = saved
    return asyncssh


def theirs(*names: str) -> tuple[type[BaseException], ...]:
    """asyncssh's exception classes of these names if it is loaded, else none."""
    module = sys.modules.get("asyncssh")
    return tuple(getattr(module, name) for name in names) if module is not None else ()
