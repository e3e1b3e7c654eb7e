"""Loading real eBPF programs for the tests, through the same bare syscall the collector
uses: a two-instruction program (``r0 = 0; exit``) is the smallest the verifier accepts."""

from __future__ import annotations

import ctypes
import socket
import struct

from collectors import bpf, rawsys

_RETURN_ZERO = bytes.fromhex("b700000000000000") + bytes.fromhex("9500000000000000")
SO_ATTACH_BPF = 50


def load(prog_type: str, name: str) -> int:
    """Load a program of ``prog_type`` named ``name``; returns its descriptor."""
    insns = ctypes.create_string_buffer(_RETURN_ZERO)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "=IIQQ", attr, 0, bpf.PROG_TYPES.index(prog_type), 2, ctypes.addressof(insns),
        ctypes.addressof(lic),
    )  # fmt: skip
    struct.pack_into("=16s", attr, 48, name.encode())
    fd = rawsys.syscall("bpf", bpf.PROG_LOAD, ctypes.addressof(attr), len(attr))
    if fd < 0:
        raise OSError(-fd, f"BPF_PROG_LOAD {prog_type} failed")
    return fd


def attach_raw_tracepoint(prog_fd: int, tracepoint: str) -> int:
    """Attach a raw_tracepoint program: the kernel makes a link; returns its descriptor."""
    tp = ctypes.create_string_buffer(tracepoint.encode())
    attr = ctypes.create_string_buffer(struct.pack("=QI", ctypes.addressof(tp), prog_fd), 16)
    fd = rawsys.syscall("bpf", bpf.RAW_TRACEPOINT_OPEN, ctypes.addressof(attr), len(attr))
    if fd < 0:
        raise OSError(-fd, "BPF_RAW_TRACEPOINT_OPEN failed")
    return fd


def attach_socket(prog_fd: int) -> socket.socket:
    """A UDP socket with the program attached as its filter (SO_ATTACH_BPF)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, prog_fd)
    return s


def pin(fd: int, path: str) -> None:
    """Pin the object behind ``fd`` at ``path`` in a bpf file system (BPF_OBJ_PIN)."""
    name = ctypes.create_string_buffer(path.encode())
    attr = ctypes.create_string_buffer(struct.pack("=QI", ctypes.addressof(name), fd), 16)
    r = rawsys.syscall("bpf", bpf.OBJ_PIN, ctypes.addressof(attr), len(attr))
    if r < 0:
        raise OSError(-r, f"BPF_OBJ_PIN {path} failed")
