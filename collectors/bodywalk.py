"""The timeline's walk: bodyfile lines for every entry of a host's local file systems,
at the cost of one ``statx(2)`` system call and one formatted line per entry.

A host has hundreds of thousands of entries, so what would be noise elsewhere is the
whole cost here: the walk (``walk.walk_dirs``) hands over each directory's descriptor
and this module lists it by name (``os.listdir``: no per-entry object), takes each
entry's stat with ``statx`` relative to that descriptor, never following a symlink
(``AT_SYMLINK_NOFOLLOW``, no automount), unpacks only the fields a bodyfile has straight
from the result buffer, and formats the line with the mode string cached per mode.
Lines are handed on in chunks of about a megabyte. Where the C library has no ``statx``
or the kernel refuses it (``ENOSYS``), each entry takes one ``os.stat`` instead and has
no birth time (0).

Where it was built, ``collectors/_bodylist.c`` does one directory's work instead (the
same lines, byte for byte, a third of the CPU): Python then only decides what to enter
and reports the errors; the descent and its checks stay ``walk_dirs``'s."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import struct
from collections.abc import Callable

from manifests.statx import AT_NO_AUTOMOUNT, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, STATX_BTIME

from .walk import DirId, walk_dirs

try:
    from . import _bodylist  # type: ignore[attr-defined]
except ImportError:  # built without a compiler: the lines are written in Python
    _bodylist = None

CHUNK_LINES = 8192  # lines gathered before one hand-over: about a megabyte
_FLAGS = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT
_MASK = STATX_BASIC_STATS | STATX_BTIME
# struct statx (linux/stat.h), only what a bodyfile needs: mask, uid, gid, mode, ino,
# size, the seconds of atime, btime, ctime and mtime, and the device's major and minor.
_FIELDS = struct.Struct("=I16xIIH2xQQ16x" + "q8x" * 4 + "8xII")
_BTIME, _S_IFMT, _S_IFDIR = STATX_BTIME, stat.S_IFMT(0o177777), stat.S_IFDIR
_SPECIAL = re.compile(rb"[\x00-\x1f\x7f|\\]")
# A name read as text (surrogate escapes for bytes that are not UTF-8) that needs the
# byte-exact escaping of ``body_name``: a special character or an undecodable byte.
_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f|\\\\\udc80-\udcff]")
Emit = Callable[[bytes], None]
OnError = Callable[[bytes, OSError], None]


def _load() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """``statx`` from the C library already loaded in this process (never searched for,
    see ``manifests.statx``), without ``argtypes``: ctypes then passes ints and bytes
    as they are, and a call costs a third less than with each converted by declared types."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).statx
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    return fn


_STATX = _load()


def lister() -> str:
    """Which lister writes the lines here: ``c`` (``_bodylist``, built and ``statx``
    found) or ``python``; named by ``selfcheck`` and in the journal's timeline event."""
    return "c" if _bodylist is not None and _STATX is not None else "python"


def mode_string(mode: int) -> str:
    """As TSK writes it: name type, '/', meta type and permissions (``r/rrwxr-xr-x``)."""
    text = stat.filemode(mode)
    kind = "r" if text[0] == "-" else text[0]
    return f"{kind}/{kind}{text[1:]}"


def body_name(path: bytes) -> str:
    """The path, with '|', '\\', control bytes and bytes that are not UTF-8 written as
    ``\\xNN``, so that a hostile file name can neither add a field nor a line."""
    if _SPECIAL.search(path):
        path = _SPECIAL.sub(lambda m: b"\\x%02x" % m[0][0], path)
    return path.decode("utf-8", "backslashreplace")


def body_line(path: bytes, st: os.stat_result) -> bytes:
    """The line of one entry stat-ed on its own (the walk's top), without a birth time."""
    times = f"{int(st.st_atime)}|{int(st.st_mtime)}|{int(st.st_ctime)}|0"
    owner = f"{st.st_uid}|{st.st_gid}|{st.st_size}"
    return f"0|{body_name(path)}|{st.st_ino}|{mode_string(st.st_mode)}|{owner}|{times}\n".encode()


class BodyWalker:
    """One walk's state: where lines go, what is not entered, what was counted."""

    def __init__(
        self,
        emit: Emit,
        on_error: OnError,
        *,
        exclude: frozenset[DirId] = frozenset(),
        exclude_devs: frozenset[int] = frozenset(),
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.emit = emit
        self.on_error = on_error
        self.exclude = exclude
        self.exclude_devs = exclude_devs
        self.stopped = stopped
        self.entries = 0
        self.births = 0
        self.vanished = 0  # listed, then gone before its stat: no error, a count
        self._lines: list[str] = []  # the Python lister's, then encoded into _chunks
        self._chunks: list[bytes] = []  # lines ready to hand over, _pending of them
        self._pending = 0
        self._modes: dict[int, str] = {}
        self._buf = ctypes.create_string_buffer(256)  # sizeof(struct statx)
        self._statx = _STATX
        self._clist = _bodylist.list_dir if lister() == "c" else None

    def walk(self, top: bytes) -> None:
        """Every entry below ``top`` (not ``top`` itself), then the last lines."""
        walk_dirs(top, self._report, self._list)
        self.flush()

    def _report(self, path: bytes, error: OSError) -> None:
        if error.errno == errno.ENOENT:
            self.vanished += 1
        else:
            self.on_error(path, error)

    def flush(self) -> None:
        self._encode()
        if self._chunks:
            self.entries += self._pending
            chunk = b"".join(self._chunks)
            self._chunks, self._pending = [], 0
            self.emit(chunk)

    def _encode(self) -> None:
        if self._lines:
            self._pending += len(self._lines)
            self._chunks.append("".join(self._lines).encode("utf-8", "surrogateescape"))
            self._lines = []

    def _list(self, fd: int, path: bytes) -> list[tuple[bytes, DirId]]:
        """One directory's lines; returns the subdirectories to enter."""
        if self.stopped():
            return []
        if self._clist is not None:
            listed = self._list_in_c(fd, path)
            if listed is not None:
                return listed
            self._clist = None  # statx refused: this directory, and the rest, in Python
        try:
            names = os.listdir(fd)
        except OSError as e:
            self._report(path, e)
            return []
        prefix = body_name(path.rstrip(b"/")) + "/"
        subdirs: list[tuple[bytes, DirId]] = []
        append, modes, buf, statx = self._lines.append, self._modes, self._buf, self._statx
        unpack, needs_escape = _FIELDS.unpack_from, _NEEDS_ESCAPE.search
        births = 0
        for name in names:
            raw = name.encode("utf-8", "surrogateescape")
            if statx is not None and statx(fd, raw, _FLAGS, _MASK, buf) == 0:
                mask, uid, gid, mode, ino, size, a, b, c, m, major, minor = unpack(buf)
                if not mask & _BTIME:
                    b = 0
            else:
                fields = self._slow_stat(fd, raw, path)
                if fields is None:
                    continue
                uid, gid, mode, ino, size, a, b, c, m, major, minor = fields
            if b:
                births += 1
            shown = modes.get(mode)
            if shown is None:
                shown = modes[mode] = mode_string(mode)
            if needs_escape(name):
                name = body_name(raw)
            append(f"0|{prefix}{name}|{ino}|{shown}|{uid}|{gid}|{size}|{a}|{m}|{c}|{b}\n")
            if mode & _S_IFMT == _S_IFDIR:
                dev = os.makedev(major, minor)
                if dev not in self.exclude_devs and (dev, ino) not in self.exclude:
                    subdirs.append((raw, (dev, ino)))
        self.births += births
        if len(self._lines) + self._pending >= CHUNK_LINES:
            self.flush()
        return subdirs

    def _list_in_c(self, fd: int, path: bytes) -> list[tuple[bytes, DirId]] | None:
        """``_list`` by ``_bodylist.list_dir``; None (nothing listed) where ``statx`` is
        refused, for the Python lister to take over."""
        assert self._clist is not None
        try:
            got = self._clist(fd, path, self.exclude, self.exclude_devs)
        except OSError as e:
            self._report(path, e)
            return []
        if got is None:
            return None
        lines, count, births, subdirs, errors = got
        if errors:
            for number, name in errors:
                self._report(os.path.join(path, name), OSError(number, os.strerror(number)))
        self.births += births
        if count:
            self._chunks.append(lines)
            self._pending += count
            if self._pending >= CHUNK_LINES:
                self.flush()
        return subdirs

    def _slow_stat(self, fd: int, raw: bytes, path: bytes) -> tuple[int, ...] | None:
        """The stat of one entry without the fast path: ``os.stat`` where ``statx`` is
        missing or refused by the kernel (no birth time), else the error, reported."""
        if self._statx is not None:
            err = ctypes.get_errno()
            if err != errno.ENOSYS:
                self._report(os.path.join(path, raw), OSError(err, os.strerror(err)))
                return None
            self._statx = None
        try:
            st = os.stat(raw, dir_fd=fd, follow_symlinks=False)
        except OSError as e:
            self._report(os.path.join(path, raw), e)
            return None
        times = int(st.st_atime), 0, int(st.st_ctime), int(st.st_mtime)
        dev = os.major(st.st_dev), os.minor(st.st_dev)
        return (st.st_uid, st.st_gid, st.st_mode, st.st_ino, st.st_size, *times, *dev)
