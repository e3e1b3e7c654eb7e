"""Web roots and the signals that make a script there a likely web shell.

Web roots: ``/var/www``, ``/srv/www``, ``/srv/http``, ``/usr/share/nginx/html`` and every
document root the host's web server configuration names: Apache's ``DocumentRoot`` and
``Alias`` (``/etc/apache2``, ``/etc/httpd``), nginx's ``root`` and ``alias``
(``/etc/nginx``). The configuration is read as text, bounded, never run; a value with a
variable in it (``$document_root``) is not a path and is ignored.

Signals (docs/triage.md), each a short name in the script's row:

- ``exec-on-request-input``: a code or command execution call (``eval``, ``assert``,
  ``system``, ``passthru``, ``shell_exec``, ``exec``, ``popen``, ``proc_open``,
  ``base64_decode``, ``create_function``, ``Runtime.getRuntime().exec``, ``Process.Start``)
  whose arguments, within 200 characters, read request input (``$_GET``, ``$_POST``,
  ``$_REQUEST``, ``$_COOKIE``, ``$_FILES``, ``$_SERVER['HTTP_...']``,
  ``request.getParameter``, ``Request.Form``, ``Request.QueryString``, ``Request[``).
- ``high-entropy``: at least 512 bytes with a Shannon entropy of 5.5 bits a byte or more
  (packed or encoded code: source code is about 4.5 to 5.2).
- ``unlike-neighbours``: a hidden name (``.x.php``), a double extension
  (``logo.png.php``), or the only script in a directory of three or more other files
  none of which is a script (an upload directory with a ``.php`` among the images).

A script is a likely web shell with ``exec-on-request-input``, or with the two others
together."""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable

from .readfile import read_regular

SCRIPT_EXTENSIONS = frozenset(
    b".php .phtml .php3 .php4 .php5 .php7 .phar .jsp .jspx .asp .aspx .ashx .asmx .cgi .py "
    b".pl".split()
)
WEB_ROOTS = (b"var/www", b"srv/www", b"srv/http", b"usr/share/nginx/html")
CONFIG_DIRS = (b"etc/apache2", b"etc/httpd", b"etc/nginx")
MAX_CONFIG = 1024 * 1024  # bytes of one configuration file
MAX_CONFIG_FILES = 2000
SCAN_BYTES = 1024 * 1024  # of one script, examined for the signals
ENTROPY_MIN_SIZE = 512
ENTROPY_THRESHOLD = 5.5
_CALL = (
    rb"(?:\b(?:eval|assert|system|passthru|shell_exec|exec|popen|proc_open|pcntl_exec|"
    rb"base64_decode|create_function)\s*\(|Runtime\.getRuntime\(\)\s*\.exec\s*\(|"
    rb"Process\.Start\s*\(|`)"
)
_INPUT = (
    rb"(?:\$_(?:GET|POST|REQUEST|COOKIE|FILES)\b|\$_SERVER\s*\[\s*['\"]HTTP_|"
    rb"request\.getParameter|Request\.(?:Form|QueryString|Params)|Request\s*\[)"
)
_EXEC_ON_INPUT = re.compile(_CALL + rb"[^;]{0,200}?" + _INPUT, re.IGNORECASE | re.DOTALL)
_DIRECTIVES = {
    "apache": re.compile(rb"^\s*(?:DocumentRoot|Alias\s+\S+)\s+\"?([^\"\s]+)", re.M | re.I),
    "nginx": re.compile(rb"^\s*(?:root|alias)\s+['\"]?([^'\";\s]+)", re.M),
}


def is_script(name: bytes) -> bool:
    return os.path.splitext(name.lower())[1] in SCRIPT_EXTENSIONS


def entropy(data: bytes) -> float:
    """Shannon entropy in bits a byte."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def unlike_neighbours(name: bytes, neighbours: Iterable[bytes]) -> bool:
    """A hidden or double-extension script, or the only script among other files."""
    stem = os.path.splitext(name)[0]
    if name.startswith(b".") or os.path.splitext(stem)[1].lower() in (
        b".jpg", b".jpeg", b".png", b".gif", b".ico", b".txt", b".pdf", b".css", b".js",
    ):  # fmt: skip
        return True
    others = [n for n in neighbours if n != name]
    return len(others) >= 3 and not any(is_script(n) for n in others)


def signals(data: bytes, name: bytes, neighbours: Iterable[bytes]) -> list[str]:
    """The signals (above) a script's first ``SCAN_BYTES`` and name give."""
    found = []
    if _EXEC_ON_INPUT.search(data):
        found.append("exec-on-request-input")
    if len(data) >= ENTROPY_MIN_SIZE and entropy(data) >= ENTROPY_THRESHOLD:
        found.append("high-entropy")
    if unlike_neighbours(name, neighbours):
        found.append("unlike-neighbours")
    return found


def likely_web_shell(found: list[str]) -> bool:
    return "exec-on-request-input" in found or {"high-entropy", "unlike-neighbours"} <= set(found)


def config_roots(root: bytes) -> list[tuple[bytes, bytes]]:
    """(document root, configuration file naming it) from the web servers' configuration
    under ``root`` (``/`` on a live host). Paths are taken as the host sees them."""
    found: list[tuple[bytes, bytes]] = []
    files = 0
    for top in CONFIG_DIRS:
        directory = os.path.join(root, top)
        kind = "nginx" if top.endswith(b"nginx") else "apache"
        for dirpath, _, names in os.walk(directory):  # small trees: the servers' own configs
            for n in sorted(names):
                files += 1
                if files > MAX_CONFIG_FILES:
                    return found
                path = os.path.join(dirpath, n)
                try:  # sites-enabled/* are symlinks: followed, still only regular files
                    data = read_regular(os.fsdecode(path), MAX_CONFIG)
                except OSError:
                    continue
                for m in _DIRECTIVES[kind].finditer(data):
                    value = m.group(1)
                    if value.startswith(b"/") and b"$" not in value:
                        found.append((value.rstrip(b"/") or b"/", path))
    return found
