"""What every platform-specific module asks first: which operating system this is.

The flags are defined here once (as psutil's ``_common.py`` does) and imported wherever a
backend is chosen, so that "is this Linux?" has one answer and one spelling; never test
``sys.platform`` again elsewhere (showing it in a message is fine)."""

from __future__ import annotations

import os
import sys

LINUX = sys.platform.startswith("linux")
WINDOWS = sys.platform == "win32"
MACOS = sys.platform == "darwin"
POSIX = os.name == "posix"
