"""``auditrules``: the audit rules the running kernel enforces, and its audit status,
read over ``NETLINK_AUDIT`` (collectors/auditnl.py), never with ``auditctl``. The files
under ``/etc/audit`` say what should be loaded; the kernel says what is. An intruder who
ran ``auditctl -D`` or ``auditctl -e 0`` left the files alone.

Stored as ``artifacts/volatile/audit-rules.json`` (status, each rule decoded, and what
the configuration files hold) and ``artifacts/volatile/audit-rules.txt`` (one rule a line
as ``auditctl -l`` prints it). One ``audit-rules`` fact for the rules
``audit-rules-not-loaded`` and ``audit-disabled``. Without ``CAP_AUDIT_CONTROL`` in the
host's namespaces, or on a kernel without audit support, a ``skipped`` record says so."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from .auditnl import AuditUnavailable, parse_rule, read_audit
from .base import Collector, Stage
from .context import CollectContext
from .findings import apply_rules, rules_of, summarize
from .readfile import read_regular
from .textview import json_bytes, plural
from .triagegate import triage_settings

OUT = "artifacts/volatile/audit-rules.json"
TEXT = "artifacts/volatile/audit-rules.txt"
CONFIG_MAX = 4 * 1024 * 1024
RULE_OPTIONS = ("-a", "-A", "-w")  # lines that add a rule (not -D, -b, -e, -f ...)


def configured(root: bytes) -> dict[str, Any]:
    """The rule-adding lines of the audit configuration: ``rules.d/*.rules`` (which
    augenrules compiles into ``audit.rules``), else ``audit.rules`` itself."""
    top = os.path.join(root, b"etc/audit")
    rules_d = os.path.join(top, b"rules.d")
    try:
        names = sorted(n for n in os.listdir(rules_d) if n.endswith(b".rules"))
        files = [os.path.join(rules_d, n) for n in names]
    except OSError:
        files = []
    if not files and os.path.isfile(os.path.join(top, b"audit.rules")):
        files = [os.path.join(top, b"audit.rules")]
    count, read = 0, []
    for path in files:
        try:
            text = read_regular(path, CONFIG_MAX, follow=False).decode("utf-8", "replace")
        except OSError:
            continue
        read.append(os.fsdecode(path[len(root.rstrip(b"/")) :] if root != b"/" else path))
        count += sum(line.split(None, 1)[0] in RULE_OPTIONS
                     for line in text.splitlines() if line.strip())  # fmt: skip
    return {"files": read, "rule_lines": count, "has_config": os.path.isdir(top)}


class AuditRulesCollector(Collector):
    name: ClassVar[str] = "auditrules"
    stage: ClassVar[Stage] = Stage.VOLATILE
    order: ClassVar[int] = 26  # beside the kernel's other views
    description: ClassVar[str] = "the kernel's loaded audit rules and status (auditctl -l, -s)"
    root: bytes = b"/"  # tests point the configuration side at a tree

    def collect(self, ctx: CollectContext) -> None:
        if triage_settings(ctx, self.name, "Audit rules") is None:
            return
        config = configured(self.root)
        try:
            status, raw = read_audit()
        except AuditUnavailable as e:
            ctx.engine.record_skip(self.name, b"netlink:audit", e.reason, errno=e.errno,
                                   configured_rules=config["rule_lines"])  # fmt: skip
            ctx.summary.add("Audit rules", f"not read: {e.reason}")
            return
        rules, lines = [], []
        for i, data in enumerate(raw):
            try:
                rule = parse_rule(data)
            except ValueError as e:
                ctx.error(self.name, f"audit rule {i}: {e}", b"netlink:audit")
                continue
            lines.append(rule.text())
            rules.append({"text": lines[-1], **vars(rule)})
        doc = {"status": status, "rules": rules, "configured": config}
        ctx.engine.store_bytes(OUT, json_bytes(doc), self.name, kind="audit-rules")
        text = "".join(line + "\n" for line in lines) or "No rules\n"  # as auditctl -l says
        ctx.engine.store_bytes(TEXT, text.encode(), self.name, kind="audit-rules-text")
        fact = {
            "path": "/etc/audit", "enabled": status.get("enabled", 0), "loaded_rules": len(raw),
            "configured_rules": config["rule_lines"], "auditd_pid": status.get("pid", 0),
            "lost": status.get("lost", 0), "backlog_limit": status.get("backlog_limit", 0),
        }  # fmt: skip
        apply_rules(ctx, self.name, "audit-rules", fact, b"/etc/audit", OUT)
        state = {0: "disabled", 1: "enabled", 2: "enabled and locked"}.get(fact["enabled"], "?")
        ctx.summary.add(
            "Audit rules",
            f"{plural(len(raw), 'rule')} loaded, {config['rule_lines']} configured; auditing "
            f"{state}" + (f", auditd PID {fact['auditd_pid']}" if fact["auditd_pid"] else ""),
        )
        summarize(ctx, self.name, rules_of(ctx).ids("audit-rules"))
