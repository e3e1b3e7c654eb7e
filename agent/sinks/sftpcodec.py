"""SFTP version 3's numbers and encodings, and a bounds-checked reader of the server's
replies (agent/sinks/wire.py speaks the protocol with them).

Every field read from a reply is checked against the reply's own length: a hostile
server's short or lying packet is a ``ProtocolError`` (a lost connection), never an
``IndexError`` or a read past the packet."""

from __future__ import annotations

import struct

from ._ssh import theirs

VERSION = 3
MAX_PACKET = 256 * 1024 + 1024  # OpenSSH's sftp-server caps its messages at 256 KiB
DEFAULT_CHUNK = 32 * 1024  # what every SFTP server accepts when it states no limit
MAX_CHUNK = 255 * 1024
INIT, VERSION_REPLY, OPEN, CLOSE, READ, WRITE = 1, 2, 3, 4, 5, 6
FSETSTAT, OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, STAT = 10, 11, 12, 13, 14, 15, 17
EXTENDED = 200
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY = 101, 102, 103, 104, 105, 201
FX_OK, FX_EOF, FX_NO_SUCH_FILE, FX_PERMISSION_DENIED = 0, 1, 2, 3
READ_FLAG, WRITE_FLAG, CREAT_FLAG, EXCL_FLAG = 0x01, 0x02, 0x08, 0x20
A_SIZE, A_UIDGID, A_PERMISSIONS, A_ACMODTIME, A_EXTENDED = 1, 2, 4, 8, 0x80000000


class SftpError(Exception):
    """A status other than OK from the server: its code and its words (``code`` and
    ``reason``, as asyncssh's ``SFTPError`` has them, so one check reads either)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class SftpNoSuchFile(SftpError):
    def __init__(self, reason: str) -> None:
        super().__init__(FX_NO_SUCH_FILE, reason)


class SftpLinkLost(ConnectionError):
    """The SFTP session is over (ssh exited, or the server broke the protocol)."""


class ProtocolError(SftpLinkLost):
    """The server said something SFTP v3 does not allow: the session is over."""

    def __init__(self, why: str) -> None:
        super().__init__(f"SFTP protocol error from the server: {why}")


def status_error(code: int, message: str) -> SftpError:
    return SftpNoSuchFile(message) if code == FX_NO_SUCH_FILE else SftpError(code, message)


def no_such_file() -> tuple[type[BaseException], ...]:
    """'No such file' from either transport (an ``except`` clause's classes)."""
    return (SftpNoSuchFile, *theirs("SFTPNoSuchFile"))


def status_errors() -> tuple[type[BaseException], ...]:
    """Any status other than OK, from either transport."""
    return (SftpError, *theirs("SFTPError"))


def link_lost() -> tuple[type[BaseException], ...]:
    """The session over, from either transport (asyncssh's also say it in an
    ``SFTPError`` subclass: check this first)."""
    return (SftpLinkLost, *theirs("SFTPConnectionLost", "SFTPNoConnection"))


class Reader:
    """Bounds-checked reads from one reply's payload."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError("a reply ends in the middle of a field")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack(">Q", self.take(8))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.u32())

    def attrs(self) -> dict[str, int]:
        flags, found = self.u32(), {}
        if flags & A_SIZE:
            found["size"] = self.u64()
        if flags & A_UIDGID:
            found["uid"], found["gid"] = self.u32(), self.u32()
        if flags & A_PERMISSIONS:
            found["permissions"] = self.u32()
        if flags & A_ACMODTIME:
            found["atime"], found["mtime"] = self.u32(), self.u32()
        if flags & A_EXTENDED:
            for _ in range(self.u32()):
                self.string(), self.string()
        return found

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError("a reply has trailing bytes")


def string(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack(">I", len(raw)) + raw


def attrs(permissions: int | None = None, times: tuple[int, int] | None = None) -> bytes:
    flags, body = 0, b""
    if permissions is not None:
        flags |= A_PERMISSIONS
        body += struct.pack(">I", permissions)
    if times is not None:
        flags |= A_ACMODTIME
        body += struct.pack(">II", *times)
    return struct.pack(">I", flags) + body
