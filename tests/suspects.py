"""Suspicious processes for the tests, real ones: a small C program built into the test's
directory under /tmp (world-writable: the ``exe_in_writable_location`` red flag) that
plants a secret in its heap, and a library to inject with ``LD_PRELOAD``."""

from __future__ import annotations

import subprocess
from pathlib import Path

SECRET_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* argv[1]: a token; the full secret exists only in the heap, built from two pieces.
   argv[2] (optional): bytes of extra heap, touched so that they are really there. */
int main(int argc, char **argv) {
    size_t extra = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
    char *heap = malloc(4096 + extra);
    strcpy(heap, "HEAP-SECRET-");
    strcat(heap, argv[1]);
    if (extra) memset(heap + 4096, 0x5a, extra);
    printf("ready %d\n", getpid());
    fflush(stdout);
    pause();
    return heap[0];
}
"""
NOP_C = "int preserve_test_injected(void) { return 42; }\n"


def build_secret(directory: Path) -> Path:
    src, exe = directory / "secret.c", directory / "secret"
    src.write_text(SECRET_C)
    subprocess.run(["gcc", "-O0", "-o", exe, src], check=True)
    return exe


def build_library(directory: Path) -> Path:
    src, lib = directory / "inject.c", directory / "libinject.so"
    src.write_text(NOP_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib, src], check=True)
    return lib


def start(argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    """Start it and wait until it says it is ready (its secret is in place)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc
