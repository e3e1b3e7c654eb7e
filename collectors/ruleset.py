"""Finding rules as data: the built-in ``collectors/rules/triage.toml`` plus the examiner's
own files (``preserve --rules FILE``), checked when they are loaded and applied to the
facts the triage collectors gather.

A collector describes what it saw as a *fact*: a flat dict of one of the kinds in
``FACTS`` (a persistence entry, an account, a shell history line, a package file...), each
with a closed set of fields. A rule names one fact kind and the conditions under which a
fact of that kind is worth an examiner's eyes; every matching rule makes one finding
(collectors/findings.py), linked to the artifact that holds the evidence. The condition
vocabulary is closed and small, so a rule file holds no code:

- ``equals = {field = value}``: the field equals the value (a list: equals one of them);
- ``not_equals = {field = value}``: the field equals none of them;
- ``regex = {field = "pattern"}``: Python ``re.search`` on the field's text;
- ``below = {field = N}``, ``at_least = {field = N}``: numeric comparisons;
- ``any = [{...}, {...}]``: at least one of these condition tables holds.

All conditions at a rule's top level must hold. ``severity_if = [{severity = "HIGH",
equals = {...}}]`` raises (or lowers) the severity where its conditions hold; the first
that holds wins. A rule in a later file with the id of an earlier one replaces it;
``enabled = false`` turns a rule off. Every mistake is a usage error (exit 2, before
anything is collected) naming the file, the rule and the key."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.errors import UsageError

BUILTIN = Path(__file__).with_name("rules") / "triage.toml"
SEVERITIES = ("HIGH", "MEDIUM", "LOW")
_B, _I, _S, _L = bool, int, str, list
_DIGESTS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
# The facts collectors produce, and each one's fields. ``in_window`` is added to every
# fact with a ``changed_ns``: changed within the profile's detection window.
_COMMON = {"path": _S, "in_window": _B, "changed_ns": _I}
FACTS: dict[str, dict[str, type]] = {
    "persistence": {
        **_COMMON, "kind": _S, "user": _S, "line": _S, "line_no": _I, "entries": _I,
        "targets": _L, "writable_target": _B, "package_state": _S, "history_disabled": _B,
        "enabled": _B, "started": _B, "targets_unpackaged": _B, "modules": _L,
    },
    "account": {
        **_COMMON, "name": _S, "uid": _I, "gid": _I, "home": _S, "shell": _S,
        "login_shell": _B, "system": _B, "base_account": _B, "default_login_shell": _B,
    },
    "history-line": {**_COMMON, "user": _S, "shell": _S, "line": _S, "line_no": _I},
    "package-file": {
        **_COMMON, "state": _S, "package": _S, "executable": _B, "algorithm": _S,
        # the database's digest and the file's, named by algorithm (dpkg: md5; RPM: its own)
        **{f"{p}{a}": _S for a in _DIGESTS for p in ("expected_", "")},
    },
    "privileged-file": {**_COMMON, "packaged": _B, "mode": _S, "capability": _S, "sha256": _S},
    "staged-file": {**_COMMON, "executable": _B, "sha256": _S, "mode": _S},
    "boot-file": {
        **_COMMON, "kind": _S, "sha256": _S, "size": _I, "init_override": _S,
        "interpreter": _S, "writable_target": _B,
    },
    "inode-flag": {
        **_COMMON, "flags": _S, "immutable": _B, "append_only": _B, "directory": _B,
        "area": _S, "persistence_kind": _S,
    },
    "audit-rules": {
        **_COMMON, "enabled": _I, "loaded_rules": _I, "configured_rules": _I,
        "auditd_pid": _I, "lost": _I, "backlog_limit": _I,
    },
    "locate-db": {**_COMMON, "format": _S, "names": _I, "size": _I},
    "locate-name": {**_COMMON, "database": _S, "exists": _B, "writable_dir": _B},
    "process-record": {
        **_COMMON, "command": _S, "user": _S, "uid": _I, "pid": _I, "ppid": _I,
        "exitcode": _I, "flags": _S,
    },
}  # fmt: skip
_OPERATORS = ("equals", "not_equals", "regex", "below", "at_least")
_RULE_KEYS = {"id", "fact", "severity", "why", "message", "record", "enabled", "any"}
_RULE_KEYS |= {"severity_if", *_OPERATORS}


class RulesError(UsageError):
    """A rule file that cannot be used; the message names the file, rule and key."""

    hint = "fix the rule file (docs/triage.md lists the facts, fields and conditions)"


@dataclass(frozen=True)
class Conditions:
    """One table of conditions, all of which must hold (``any``: one of its tables)."""

    equals: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    not_equals: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    regex: tuple[tuple[str, re.Pattern[str]], ...] = ()
    below: tuple[tuple[str, int], ...] = ()
    at_least: tuple[tuple[str, int], ...] = ()
    any: tuple[Conditions, ...] = ()

    def holds(self, fact: dict[str, Any]) -> bool:
        get = fact.get
        return (
            all(_among(get(k), vs) for k, vs in self.equals)
            and not any(_among(get(k), vs) for k, vs in self.not_equals)
            and all(get(k) is not None and p.search(_text(get(k))) for k, p in self.regex)
            and all(_num(get(k)) is not None and _num(get(k)) < n for k, n in self.below)  # type: ignore[operator]
            and all(_num(get(k)) is not None and _num(get(k)) >= n for k, n in self.at_least)  # type: ignore[operator]
            and (not self.any or any(c.holds(fact) for c in self.any))
        )

    def fields(self) -> set[str]:
        """The fact fields these conditions read: nothing else can change ``holds``."""
        tables = (self.equals, self.not_equals, self.regex, self.below, self.at_least)
        found = {k for table in tables for k, _ in table}
        for c in self.any:
            found |= c.fields()
        return found


def _among(value: Any, wanted: tuple[Any, ...]) -> bool:
    """Does ``value`` (for a list: one of its items) equal one of ``wanted``? A bool
    never equals a number here, unlike in Python."""
    items = value if isinstance(value, list) else [value]
    return any(type(v) is type(w) and v == w for v in items for w in wanted)


def _text(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _num(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Rule:
    id: str
    fact: str
    severity: str
    why: str  # one sentence: why an examiner should care
    message: str  # a str.format template over the fact's fields
    record: tuple[str, ...]  # fact fields copied into the finding record
    when: Conditions
    severity_if: tuple[tuple[str, Conditions], ...] = ()
    source: str = ""  # the file it came from

    def severity_for(self, fact: dict[str, Any]) -> str:
        return next((s for s, c in self.severity_if if c.holds(fact)), self.severity)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()
    _by_fact: dict[str, tuple[Rule, ...]] = field(default_factory=dict, compare=False)

    def for_fact(self, fact: str) -> tuple[Rule, ...]:
        if fact not in self._by_fact:
            self._by_fact[fact] = tuple(r for r in self.rules if r.fact == fact)
        return self._by_fact[fact]

    def ids(self, *facts: str) -> set[str]:
        return {r.id for r in self.rules if r.fact in facts}


def load_rules(extra: tuple[Path, ...] = (), builtin: Path = BUILTIN) -> RuleSet:
    """The built-in rules, then each of ``extra`` in order (same id: replaced)."""
    rules: dict[str, Rule | None] = {}
    for path in (builtin, *extra):
        for rule_id, rule in _load_file(path):
            rules.pop(rule_id, None)
            rules[rule_id] = rule
    kept = tuple(r for r in rules.values() if r is not None)
    return RuleSet(kept, tuple(str(p) for p in (builtin, *extra)))


def _load_file(path: Path) -> list[tuple[str, Rule | None]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RulesError(f"cannot read the rule file {path}: {e}") from e
    extra = sorted(set(data) - {"rule", "version"})
    if extra:
        raise RulesError(f"{path}: unknown top-level key {extra[0]!r} (known: rule, version)")
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise RulesError(f"{path}: 'rule' must be an array of tables ([[rule]])")
    return [_parse_rule(path, n, entry) for n, entry in enumerate(entries, 1)]


def _parse_rule(path: Path, n: int, entry: Any) -> tuple[str, Rule | None]:
    where = f"{path}, rule #{n}"
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        raise RulesError(f"{where}: needs a text 'id'")
    rule_id = entry["id"]
    where = f"{path}, rule {rule_id!r}"
    if entry.get("enabled", True) is False:
        return rule_id, None
    unknown = sorted(set(entry) - _RULE_KEYS)
    if unknown:
        raise RulesError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_RULE_KEYS))})"
        )
    fact = entry.get("fact")
    if fact not in FACTS:
        raise RulesError(f"{where}: 'fact' must be one of {', '.join(FACTS)}")
    fields = FACTS[fact]
    severity = _severity(where, entry.get("severity"))
    for key in ("why", "message"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise RulesError(f"{where}: needs a text {key!r}")
    _check_template(where, entry["message"], fields)
    record = entry.get("record", [])
    if not isinstance(record, list) or any(r not in fields for r in record):
        raise RulesError(
            f"{where}: 'record' must list fields of a {fact} fact: {', '.join(fields)}"
        )
    raw_if = entry.get("severity_if", [])
    if not isinstance(raw_if, list):
        raise RulesError(f"{where}: 'severity_if' must be an array of tables")
    severity_if = tuple(
        (_severity(where, t.get("severity")), _conditions(where, fields, t, {"severity"}))
        for t in raw_if
        if isinstance(t, dict) or _fail(f"{where}: each 'severity_if' entry must be a table")
    )
    when = _conditions(where, fields, entry, _RULE_KEYS - {*_OPERATORS, "any"})
    rule = Rule(
        rule_id, fact, severity, entry["why"].strip(), entry["message"], tuple(record), when,
        severity_if, str(path),
    )  # fmt: skip
    return rule_id, rule


def _fail(message: str) -> bool:
    raise RulesError(message)


def _severity(where: str, value: Any) -> str:
    if value not in SEVERITIES:
        raise RulesError(f"{where}: 'severity' must be one of {', '.join(SEVERITIES)}")
    return str(value)


def _check_template(where: str, template: str, fields: dict[str, type]) -> None:
    names = re.findall(r"\{([^{}!:]*)", template)
    bad = [n for n in names if n not in fields]
    if bad:
        raise RulesError(f"{where}: 'message' names {bad[0]!r}, not a field of this fact")


def _conditions(
    where: str, fields: dict[str, type], table: dict[str, Any], other: set[str]
) -> Conditions:
    unknown = sorted(set(table) - set(_OPERATORS) - {"any"} - other)
    if unknown:
        raise RulesError(
            f"{where}: unknown condition {unknown[0]!r} (known: {', '.join(_OPERATORS)}, any)"
        )
    parsed: dict[str, Any] = {}
    for op in _OPERATORS:
        value = table.get(op, {})
        if not isinstance(value, dict):
            raise RulesError(f"{where}: {op!r} must be a table of field = value")
        items = []
        for name, want in value.items():
            if name not in fields:
                raise RulesError(
                    f"{where}: {op!r} names {name!r}, not a field (known: {', '.join(fields)})"
                )
            items.append((name, _operand(where, op, name, want, fields[name])))
        parsed[op] = tuple(items)
    raw_any = table.get("any", [])
    if not isinstance(raw_any, list) or not all(isinstance(t, dict) for t in raw_any):
        raise RulesError(f"{where}: 'any' must be an array of condition tables")
    parsed["any"] = tuple(_conditions(where, fields, t, set()) for t in raw_any)
    return Conditions(**parsed)


def _operand(where: str, op: str, name: str, want: Any, kind: type) -> Any:
    if op in ("equals", "not_equals"):
        values = tuple(want) if isinstance(want, list) else (want,)
        kind = str if kind is list else kind  # a list field is compared as its text
        if not all(type(v) is kind for v in values):
            words = {bool: "true or false", int: "a whole number", str: "text"}[kind]
            raise RulesError(f"{where}: {op}.{name} must be {words} (or a list of them)")
        return values
    if op == "regex":
        try:
            return re.compile(str(want))
        except re.error as e:
            raise RulesError(f"{where}: regex.{name} is not a valid pattern: {e}") from e
    if isinstance(want, bool) or not isinstance(want, int):
        raise RulesError(f"{where}: {op}.{name} must be a whole number")
    return want
