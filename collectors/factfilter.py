"""Judging a stream of facts of one kind against the rules without running every rule on
every fact: each rule's conditions read a few fields (``Conditions.fields``), so whether
any rule can hold is worked out once for each combination of those fields' values. Split
from ``ruleset`` (which loads and checks the rules) for the collectors that judge tens of
thousands of facts (``pacct``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .ruleset import RuleSet


class FactFilter:
    """Whether any rule on ``kind`` facts can hold for a fact, worked out once for each
    combination of the fields those rules read (with their types: ``True`` is not ``1``
    here). A stream of facts that differ in other fields (a pacct file's 50,000 records:
    the rule reads the command and the window) costs a dictionary look-up a fact."""

    MAX_KEPT = 100_000  # combinations remembered; then forgotten and worked out again

    def __init__(self, rules: RuleSet, kind: str) -> None:
        self._rules = rules.for_fact(kind)
        self._fields = tuple(sorted({f for r in self._rules for f in r.when.fields()}))
        self._verdicts: dict[tuple[Any, ...], bool] = {}

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields the rules read, in the order ``may_hold_keyed`` takes them."""
        return self._fields

    def may_hold(self, fact: dict[str, Any]) -> bool:
        values = [fact.get(f) for f in self._fields]
        try:
            return self.may_hold_keyed((*values, *map(type, values)), dict, fact)
        except TypeError:  # a list among the values: judged as it is
            return any(r.when.holds(fact) for r in self._rules)

    def may_hold_keyed(
        self, key: tuple[Any, ...], make: Callable[[Any], dict[str, Any]], source: Any
    ) -> bool:
        """``may_hold`` for a caller that has the values of ``fields`` at hand (``key``,
        each field always of one type): the fact (``make(source)``) is made only for a
        combination not seen before."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= self.MAX_KEPT:
                self._verdicts.clear()
            made = make(source)
            verdict = self._verdicts[key] = any(r.when.holds(made) for r in self._rules)
        return verdict
