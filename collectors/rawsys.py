"""System calls that no ``LD_PRELOAD`` library can intercept, and the PID-space probe.

A user-space rootkit hooks libc (``readdir``, ``open``, even libc's ``syscall()``
wrapper); it cannot hook the ``syscall`` instruction. On x86_64 this module maps two tiny
functions of machine code (compiled from the C in ``_STUB_SOURCE``) into an executable
page and calls them through ctypes: ``sys6`` is a bare system call, ``probe`` asks the
kernel ``kill(pid, 0)`` for a whole range of PIDs in one native loop (4,194,304 PIDs in
under a second on a two-core machine, where a Python loop needs 4-6 s; bench/RESULTS.md).

Where executable memory is refused (SELinux ``execmem``, another architecture) the same
calls go through libc's ``syscall()``, which is hookable: ``KERNEL_DIRECT`` says which
path is in use, and the evidence records it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import struct
from collections.abc import Callable

# x86_64 (gcc -O2 -fPIC -fno-stack-protector of _STUB_SOURCE): probe at 0, sys6 at 0x60.
_STUB_SOURCE = """
long probe(long lo, long hi, long *out, long max) {  /* pids where kill(pid,0) != -ESRCH */
    long n = 0;
    for (long pid = lo; pid < hi && n < max; pid++) {
        long r;
        __asm__ volatile ("syscall" : "=a"(r) : "0"(62L), "D"(pid), "S"(0L)
                          : "rcx", "r11", "memory");
        if (r != -3) out[n++] = pid;
    }
    return n;
}
long sys6(long nr, long a1, long a2, long a3, long a4, long a5, long a6);  /* syscall */
"""
_X86_64_CODE = bytes.fromhex(
    "4839f77d4b4989ca4885c97e43534989f14531c0bb3e00000031f60f1f4400004889d80f05"
    "4883f8fd74084a893cc24983c0014883c7014939f97e054d39d07cdf4c89c05bc3662e0f1f"
    "84000000000031c0c366662e0f1f84000000000066904889f84d89c24889f74d89c84889d6"
    "4c8b4c24084889ca0f05c3"
)
_SYS6_OFFSET = 0x60

# System call numbers (asm-generic for aarch64 and riscv64).
_NR = {
    "x86_64": {
        "kill": 62,
        "getpgid": 121,
        "getdents64": 217,
        "clock_gettime": 228,
        "openat": 257,
        "read": 0,
        "close": 3,
        "bpf": 321,
    },
    "aarch64": {
        "kill": 129,
        "getpgid": 155,
        "getdents64": 61,
        "clock_gettime": 113,
        "openat": 56,
        "read": 63,
        "close": 57,
        "bpf": 280,
    },
}
ARCH = platform.machine()
NR = _NR.get(ARCH, {})
ESRCH = 3
BATCH = 65536

_Long = ctypes.c_long
_page: mmap.mmap | None = None  # kept alive: the functions below point into it
_sys6: Callable[..., int] | None = None
_probe: Callable[..., int] | None = None
KERNEL_DIRECT = False


def _map_stub() -> None:
    global _page, _sys6, _probe, KERNEL_DIRECT
    if ARCH != "x86_64":
        return
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return  # executable memory refused: the libc path below
    page.write(_X86_64_CODE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(page))
    _page = page
    _probe = ctypes.CFUNCTYPE(_Long, _Long, _Long, ctypes.c_void_p, _Long)(base)
    _sys6 = ctypes.CFUNCTYPE(_Long, *[_Long] * 7)(base + _SYS6_OFFSET)
    KERNEL_DIRECT = True


_map_stub()
_libc = ctypes.CDLL(None, use_errno=True)
_libc_syscall = _libc.syscall
_libc_syscall.restype = _Long


def syscall(name: str, *args: int) -> int:
    """The system call ``name``: its result, or ``-errno`` (as the kernel returns it);
    ``-ENOSYS`` on an architecture whose number for it this module does not know, so the
    caller records the view as unreadable rather than failing."""
    nr = NR.get(name)
    if nr is None:
        return -errno.ENOSYS
    if _sys6 is not None:
        padded = [*args, *[0] * (6 - len(args))]
        return int(_sys6(nr, *padded))
    result = int(_libc_syscall(_Long(nr), *(_Long(a) for a in args)))
    return -ctypes.get_errno() if result == -1 else result


def probe_pids(lo: int, hi: int) -> list[int]:
    """Every PID in ``[lo, hi]`` the kernel says exists (``kill(pid, 0)`` is not ESRCH:
    EPERM means it exists and is someone else's). Thread IDs answer too."""
    found: list[int] = []
    if _probe is not None:
        buf = (_Long * BATCH)()
        start = lo
        while start <= hi:
            n = int(_probe(start, hi + 1, buf, BATCH))
            found.extend(buf[:n])
            start = found[-1] + 1 if n == BATCH else hi + 1
        return found
    kill = NR["kill"]
    for pid in range(lo, hi + 1):
        if _libc_syscall(kill, pid, 0) == 0 or ctypes.get_errno() != ESRCH:
            found.append(pid)
    return found


def getpgid(pid: int) -> int:
    return syscall("getpgid", pid)


_AT_FDCWD = -100
# The platform's own values (O_NOFOLLOW is 0o400000 on x86_64, 0o100000 on aarch64).
_O_RDONLY_NOFOLLOW_NONBLOCK_CLOEXEC = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_file(path: str | bytes, limit: int = 1 << 20) -> bytes:
    """A file's first ``limit`` bytes through bare ``openat``/``read`` system calls, which
    a preloaded library cannot filter (it hooks libc's ``open``/``fopen``/``read``).
    Does not follow a final symlink; raises OSError."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    fd = syscall(
        "openat", _AT_FDCWD, ctypes.addressof(name), _O_RDONLY_NOFOLLOW_NONBLOCK_CLOEXEC, 0
    )
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd), os.fsdecode(path))
    chunks: list[bytes] = []
    buf = ctypes.create_string_buffer(1 << 16)
    try:
        got = 0
        while got < limit:
            n = syscall("read", fd, ctypes.addressof(buf), min(len(buf), limit - got))
            if n < 0:
                raise OSError(-n, os.strerror(-n), os.fsdecode(path))
            if n == 0:
                break
            chunks.append(buf.raw[:n])
            got += n
    finally:
        syscall("close", fd)
    return b"".join(chunks)


_DIRENT = struct.Struct("=QqHB")  # d_ino, d_off, d_reclen, d_type, then the name


def getdents(path: str) -> list[bytes]:
    """The names in a directory as the kernel returns them (``getdents64`` on an
    ``O_DIRECTORY`` descriptor), past libc's ``readdir``. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    names: list[bytes] = []
    buf = ctypes.create_string_buffer(1 << 16)
    try:
        while True:
            n = syscall("getdents64", fd, ctypes.addressof(buf), len(buf))
            if n < 0:
                raise OSError(-n, os.strerror(-n), path)
            if n == 0:
                return names
            data = buf.raw[:n]
            at = 0
            while at < n:
                _, _, reclen, _ = _DIRENT.unpack_from(data, at)
                name = data[at + _DIRENT.size : at + reclen].split(b"\0", 1)[0]
                if name not in (b".", b".."):
                    names.append(name)
                at += reclen
    finally:
        os.close(fd)
