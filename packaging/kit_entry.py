"""Entry point of the kit's executables: one bundle, two names (``preserve``, ``verify``).

Both executables are the same program; the name it was started under picks the command,
so the kit carries one interpreter and one set of libraries. Bytecode writing is switched
off before anything else is imported: the kit must not leave ``__pycache__`` anywhere.

The kit's static launcher (packaging/launcher.c) starts this program through the kit's
own loader, so the kernel names the process after the loader (``ld-linux-x86-64``): the
name is set back to the command's, as ``ps`` and the kit's own process listing expect.
``-m MODULE`` runs one of the project's modules, as ``python -m`` does in a development
install: that is how the kit starts a helper child of itself (collectors/selfexec.py)."""

import ctypes
import os
import sys

sys.dont_write_bytecode = True
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
# The launcher drops the host's LD_* variables; whatever the bootloader set is not for
# the host programs a collector or isolation hook runs (nft, ip).
if "LD_LIBRARY_PATH_ORIG" in os.environ:
    os.environ["LD_LIBRARY_PATH"] = os.environ.pop("LD_LIBRARY_PATH_ORIG")
else:
    os.environ.pop("LD_LIBRARY_PATH", None)
_PR_SET_NAME = 15
_NAME = os.path.basename(sys.executable)
ctypes.CDLL(None).prctl(_PR_SET_NAME, _NAME.encode()[:15], 0, 0, 0)
_OWN_PACKAGES = ("agent.", "collectors.", "manifests.")


def _run_module() -> None:
    import runpy

    module = sys.argv[2]
    sys.argv = [sys.executable, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _main() -> None:
    from agent.kit import OVERRIDE_FLAG

    if len(sys.argv) > 2 and sys.argv[1] == "-m" and sys.argv[2].startswith(_OWN_PACKAGES):
        _run_module()
    elif _NAME.startswith("verify"):
        override = OVERRIDE_FLAG in sys.argv
        sys.argv = ["verify", *(a for a in sys.argv[1:] if a != OVERRIDE_FLAG)]
        from agent.commands.verify import main as verify_main

        verify_main(kit_override=override)  # checks the kit first
    else:
        from agent._cli import main as preserve_main

        preserve_main()


_main()
