"""``--isolation-method exec:/path/to/hook``: a site's own isolation, no Python needed.

The contract (docs/isolation.md has the full text):

- argv: ``HOOK ACTION`` with ACTION one of ``plan`` (print what you would do, change
  nothing: used by ``--dry-run``), ``apply``, ``check`` (is the cut still in force?),
  ``release``.
- environment: ``PRESERVE_ISOLATION_ID``, ``PRESERVE_ALLOW`` (space-separated entries,
  ``ADDR/LEN`` or ``ADDR/LEN:PORT``, IPv6 as ``[ADDR/LEN]:PORT``), ``PRESERVE_ALLOW_JSON``,
  ``PRESERVE_ALLOW_DNS`` and ``PRESERVE_ALLOW_DHCP`` (``0``/``1``) and, for ``release``
  only, ``PRESERVE_RELEASE_STATE`` (what ``apply`` returned).
- exit code: 0 done (for ``check``: in force); 3 applied but not confirmed (for
  ``check``: not in force); anything else failed.
- stdout and stderr go into the custody journal verbatim (up to 256 KiB each). If the
  last line of stdout is a JSON object, its ``release_state`` (any JSON) is saved on the
  kit and handed back to ``release``, and its ``detail`` (text) is shown to the responder.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .base import Method, MethodError, Plan, Request, Runner, Step

NOT_CONFIRMED = 3


def hook_env(request: Request) -> dict[str, str]:
    return {
        "PRESERVE_ISOLATION_ID": request.ident,
        "PRESERVE_ALLOW": " ".join(
            (f"[{e.network}]:{e.port}" if e.family == 6 else f"{e.network}:{e.port}")
            if e.port is not None
            else str(e.network)
            for e in request.allow
        ),
        "PRESERVE_ALLOW_JSON": json.dumps([e.to_dict() for e in request.allow]),
        "PRESERVE_ALLOW_DNS": "1" if request.allow_dns else "0",
        "PRESERVE_ALLOW_DHCP": "1" if request.allow_dhcp else "0",
    }


def last_json(stdout: str) -> dict[str, Any]:
    lines = [x for x in stdout.strip().splitlines() if x.strip()]
    if not lines:
        return {}
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class ExecHookMethod(Method):
    priority = 0
    proof = frozenset({"blocked-locally", "no-route", "timeout"})

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.name = f"exec:{self.path}"

    def viable(self) -> None:
        if not os.path.isfile(self.path) or not os.access(self.path, os.X_OK):
            raise MethodError(f"{self.path} is not an executable file")

    def plan(self, request: Request, runner: Runner, before: dict[str, Any]) -> Plan:
        env = hook_env(request)
        return Plan(
            self.name,
            apply=[Step([self.path, "apply"], env=env)],
            release=[Step([self.path, "release"], env=env)],
            notes=[f"custom hook {self.path}; see docs/isolation.md for its contract"],
            data={"env": env},
        )

    def dry_run_text(self, plan: Plan, runner: Runner) -> str:
        record = runner.run(Step([self.path, "plan"], env=plan.data["env"]), "plan")
        return record["stdout"]

    def apply(self, plan: Plan, runner: Runner) -> list[str]:
        record = runner.run(plan.apply[0], "apply")
        reply = last_json(record["stdout"])
        state = json.dumps(reply.get("release_state"), sort_keys=True)
        plan.release = [
            Step([self.path, "release"], env={**plan.data["env"], "PRESERVE_RELEASE_STATE": state})
        ]
        plan.data["detail"] = str(reply.get("detail", ""))
        plan.data["apply_exit"] = record["exit_code"]
        if record["exit_code"] in (0, NOT_CONFIRMED):
            return []
        return [f"{self.path} apply exited {record['exit_code']}: {record['stderr'][:200]}"]

    def check(self, plan: Plan, runner: Runner) -> tuple[bool, str]:
        record = runner.run(Step([self.path, "check"], env=plan.data["env"]), "check")
        detail = str(last_json(record["stdout"]).get("detail", "")) or record["stdout"][:200]
        if record["exit_code"] == 0 and plan.data.get("apply_exit", 0) == 0:
            return True, detail or "the hook reports the cut in force"
        return False, detail or f"the hook's check exited {record['exit_code']}"
