"""Entry point of the kit's executables: one bundle, two names (``preserve``, ``verify``).

Both executables are the same program; the name it was started under picks the command,
so the kit carries one interpreter and one set of libraries. Bytecode writing is switched
off before anything else is imported: the kit must not leave ``__pycache__`` anywhere."""

import os
import sys

sys.dont_write_bytecode = True
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
# The bootloader points LD_LIBRARY_PATH at the kit's libraries; host programs that a
# collector or isolation hook runs (nft, ip) must get the host's own environment back.
if "LD_LIBRARY_PATH_ORIG" in os.environ:
    os.environ["LD_LIBRARY_PATH"] = os.environ.pop("LD_LIBRARY_PATH_ORIG")
else:
    os.environ.pop("LD_LIBRARY_PATH", None)


def _main() -> None:
    from agent.kit import OVERRIDE_FLAG

    if os.path.basename(sys.executable).startswith("verify"):
        override = OVERRIDE_FLAG in sys.argv
        sys.argv = ["verify", *(a for a in sys.argv[1:] if a != OVERRIDE_FLAG)]
        from agent.commands.verify import main as verify_main

        verify_main(kit_override=override)  # checks the kit first
    else:
        from agent._cli import main as preserve_main

        preserve_main()


_main()
