"""Helpers for the report and export tests: planted evidence and a tiny PNG reader."""

from __future__ import annotations

import ipaddress
import socket
import struct
import zlib
from pathlib import Path

# utmp(5), glibc 64-bit: type, pid, line, id, user, host, exit, session, tv_sec, tv_usec,
# addr_v6[4], unused
UTMP = struct.Struct("<hh i 32s 4s 32s 256s hh i ii 4i 20s")
USER_PROCESS = 7


def utmp_record(user: str, host: str, address: str, when: int, line: str = "pts/7") -> bytes:
    addr = struct.unpack("<i", socket.inet_aton(str(ipaddress.IPv4Address(address))))[0]
    return UTMP.pack(
        USER_PROCESS,
        0,
        4242,
        line.encode(),
        b"ts/7",
        user.encode(),
        host.encode(),
        0,
        0,
        0,
        when,
        0,
        addr,
        0,
        0,
        0,
        b"",
    )


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, channels, rows


def colours(data: bytes, step: int = 3) -> set[tuple[int, int, int]]:
    width, channels, rows = png_pixels(data)
    seen = set()
    for row in rows[::step]:
        for x in range(0, width * channels, channels * step):
            seen.add((row[x], row[x + 1], row[x + 2]))
    return seen


def write_auth_log(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))
