"""The isolation step of a run: plan, apply, verify, record, and keep it in force.

It runs as the orchestrator's ``after_volatile`` hook: the volatile snapshot is already
sealed, so the connections the intruder held are on record before they are cut."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from manifests.clock import utc_from_ns

from . import state as state_mod
from .base import (
    Method,
    Plan,
    Request,
    Runner,
    Step,
    before_state,
    default_probes,
    probe,
)

EXIT_NOT_CONFIRMED = 4


def process_start_ns() -> int:
    """When this command started (wall clock), so the time to the cut counts everything.

    From /proc/self/stat's start time (clock ticks since boot) against CLOCK_BOOTTIME:
    psutil's create_time adds the boot time in whole seconds, up to 1 s off."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read(4096).rsplit(b")", 1)[1].split()
        ticks = int(fields[19])
        age_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - ticks * 1_000_000_000 // os.sysconf(
            "SC_CLK_TCK"
        )
        return time.time_ns() - max(age_ns, 0)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time_ns()


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Isolation:
    def __init__(self, method: Method, request: Request, user_probes: list[tuple[str, int]]):
        self.method = method
        self.request = request
        self.user_probes = user_probes
        self.plan: Plan | None = None
        self.state_file: Path | None = None
        self.state: dict[str, Any] = {}
        self.journal: Any = None
        self.console: Any = None
        self.started_ns = process_start_ns()
        self.cut_ns: int | None = None
        self.dry = False  # --dry-run: show the plan, change and collect nothing
        # A remote output (-o sftp://): the release state goes here (in memory, /run), not
        # beside the evidence, and ``locate`` names the evidence directory by its URL.
        self.state_home: Path | None = None
        self.locate: Callable[[str], str] | None = None

    # --- dry run -------------------------------------------------------------------------
    def dry_run(self) -> dict[str, Any]:
        """Everything --isolate would do, computed with read-only commands only."""
        runner = Runner()
        before = before_state(runner)
        plan = self.method.plan(self.request, runner, before)
        probes = self.user_probes or default_probes(self.request.allow, before)
        result = {
            "method": self.method.name,
            "allow": [e.to_dict() for e in self.request.allow],
            "stays_open": self.request.stays_open(),
            "plan": plan.to_dict(),
            "probes": [_hostport(a, p) for a, p in probes],
        }
        if plan.method == "nftables":
            check = runner.run(Step(["nft", "-c", "-f", "-"], plan.apply[0].stdin), "dry-run")
            result["syntax_check"] = "ok" if check["exit_code"] == 0 else check["stderr"].strip()
        hook_text = getattr(self.method, "dry_run_text", None)
        if hook_text:
            result["hook_plan_output"] = hook_text(plan, runner)
        return result

    # --- the real thing ------------------------------------------------------------------
    def _journal_command(self, record: dict[str, Any]) -> None:
        self.journal.append("action", action="isolation-command", **record)

    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        if self.state_file is not None:
            state_mod.save(self.state_file, self.state)

    def __call__(self, ctx: Any, console: Any) -> tuple[dict[str, Any], int]:
        self.journal, self.console = ctx.journal, console
        try:
            return self._isolate(ctx, console)
        except Exception as e:  # the collection must go on even if the cut went wrong
            ctx.journal.append("action", action="isolation-error", error=f"{type(e).__name__}: {e}")
            console.error(
                f"isolation failed ({type(e).__name__}: {e}); treat the host as connected; "
                "if anything was applied, 'preserve release' undoes it"
            )
            ctx.summary.add("Isolation", f"FAILED ({self.method.name})")
            return {"isolation": {"status": "failed"}}, EXIT_NOT_CONFIRMED

    def _isolate(self, ctx: Any, console: Any) -> tuple[dict[str, Any], int]:
        self.request.ident = Path(ctx.root).name
        home = self.state_home or Path(ctx.root).parent.resolve()
        self.state_file = state_mod.state_path(home, self.request.ident)
        self.request.state_file = str(self.state_file)
        quiet = Runner()
        before = before_state(quiet)
        ctx.journal.append(
            "action",
            action="isolation-before-state",
            commands=[r["argv"] for r in quiet.records],
            state=before,
        )
        runner = Runner(self._journal_command)
        before["kit_dir"] = str(self.state_file.parent)  # where a method may save files
        plan = self.method.plan(self.request, runner, before)
        self.plan = plan
        probes = self.user_probes or default_probes(self.request.allow, before)
        ctx.journal.append(
            "action",
            action="isolation-plan",
            method=self.method.name,
            allow=[e.to_dict() for e in self.request.allow],
            allow_dns=self.request.allow_dns,
            allow_dhcp=self.request.allow_dhcp,
            stays_open=self.request.stays_open(),
            probes=[[a, p] for a, p in probes],
            plan=plan.to_dict(),
        )
        for note in plan.notes:
            console.info(note)
        if self.method.cuts_responder:
            console.warn(
                f"{self.method.name} cuts every connection, yours too: continue from the "
                "console; undo with 'preserve release'"
            )
        self.state = {
            "format": "preserve-isolation/1",
            "id": self.request.ident,
            "method": self.method.name,
            **state_mod.where(),
            "evidence_dir": (
                self.locate(self.request.ident) if self.locate else str(Path(ctx.root).resolve())
            ),
            "created": utc_from_ns(time.time_ns()),
            "allow": [e.to_dict() for e in self.request.allow],
            "stays_open": self.request.stays_open(),
            "release": [s.to_dict() for s in plan.release],
        }
        self._save(status="applying")  # saved first: a crash mid-apply is still undoable
        failures = self.method.apply(plan, runner)
        self.cut_ns = time.time_ns()
        self._save(release=[s.to_dict() for s in plan.release])
        ok, detail = self.method.check(plan, runner)
        with ThreadPoolExecutor(max_workers=max(len(probes), 1)) as pool:  # in parallel
            results = list(pool.map(lambda target: probe(*target), probes))
        blocked = all(r["outcome"] in self.method.proof for r in results)
        proven = any(r["outcome"] in self.method.proof for r in results) or not results
        confirmed = not failures and ok and blocked and proven
        # failed: a command of the plan failed; not-confirmed: applied, but unproven
        status = "in-force" if confirmed else ("failed" if failures else "not-confirmed")
        ctx.journal.append(
            "action",
            action="isolation-verify",
            rules_ok=ok,
            rules_detail=detail,
            apply_failures=failures,
            probes=results,
            confirmed=confirmed,
        )
        self._save(status=status, verified=confirmed)
        ctx.journal.append(
            "action",
            action="isolation-applied",
            status=status,
            method=self.method.name,
            state_file=str(self.state_file),
            release_plan=[s.to_dict() for s in plan.release],
            release_command=self.release_command(),
            cut_at=utc_from_ns(self.cut_ns),
            cut_after_ms=(self.cut_ns - self.started_ns) // 1_000_000,
        )
        self._report(console, status, detail, failures, results)
        ctx.periodic.append(self.recheck)
        return self.summary(ctx, status, results), 0 if confirmed else EXIT_NOT_CONFIRMED

    def release_command(self) -> str:
        if self.state_file is None:
            return "preserve release"
        return f"preserve release -o {shlex.quote(str(self.state_file.parent.parent))}"

    def _report(
        self,
        console: Any,
        status: str,
        detail: str,
        failures: list[str],
        results: list[dict[str, Any]],
    ) -> None:
        took = ((self.cut_ns or 0) - self.started_ns) // 1_000_000
        for failure in failures:
            console.error(f"isolation command failed: {failure}")
        probe_text = ", ".join(
            f"{_hostport(r['address'], r['port'])} {r['outcome']}" for r in results
        )
        if status == "in-force":
            console.info(f"cut in force ({self.method.name}, {took} ms): {detail}")
            console.info(f"probe: {probe_text or 'none possible (no routes)'}")
        else:
            console.error(
                f"the network cut could NOT be confirmed ({detail}; probe: {probe_text}). "
                "Treat the host as still connected: pull the cable or use another method"
            )
        console.info("stays open: " + "; ".join(self.request.stays_open()))

    def summary(self, ctx: Any, status: str, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The closing box's rows (added to ``ctx.summary``) and the --json fields."""
        words = {"in-force": "IN FORCE", "not-confirmed": "NOT CONFIRMED", "failed": "FAILED"}
        fields = {
            "isolation": {
                "status": status,
                "method": self.method.name,
                "stays_open": self.request.stays_open(),
                "allow": [e.to_dict() for e in self.request.allow],
                "probes": results,
                "state_file": str(self.state_file),
                "release_command": self.release_command(),
                "cut_after_ms": ((self.cut_ns or 0) - self.started_ns) // 1_000_000,
            },
        }
        ctx.summary.add("Isolation", f"{words[status]} ({self.method.name})")
        ctx.summary.add("Stays open", "; ".join(self.request.stays_open()))
        ctx.summary.add("Release with", self.release_command())
        return fields

    # --- while --watch runs ----------------------------------------------------------------
    def recheck(self) -> None:
        """Periodic: if someone removed the cut (``nft flush ruleset``), put it back."""
        try:
            self._recheck()
        except Exception as e:  # a periodic callback must never raise
            if self.console:
                self.console.error(f"isolation re-check failed: {type(e).__name__}: {e}")

    def _recheck(self) -> bool:
        """Returns True when the cut had to be re-applied."""
        if self.plan is None or self.journal is None:
            return False
        quiet = Runner()
        ok, detail = self.method.check(self.plan, quiet)
        if ok:
            return False
        runner = Runner(self._journal_command)
        self.journal.append("action", action="isolation-lost", detail=detail)
        if self.console:
            self.console.warn(
                f"the isolation was removed by another program ({detail}); re-applying"
            )
        failures = self.method.apply(self.plan, runner)
        ok, detail = self.method.check(self.plan, runner)
        self.journal.append(
            "action",
            action="isolation-reapplied",
            rules_ok=ok,
            rules_detail=detail,
            apply_failures=failures,
        )
        if not ok and self.console:
            self.console.error(f"re-applying the isolation failed: {detail}")
        return True
