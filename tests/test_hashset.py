"""The compact set behind ``StoredNames``: no member ever looks absent, through growth."""

from __future__ import annotations

import random

from collectors.hashset import HashSet64
from collectors.pathmap import StoredNames


def test_members_stay_members_through_every_growth() -> None:
    table, reference = HashSet64(), set()
    rng = random.Random(7)
    for _ in range(50_000):
        member = (f"dir{rng.randrange(50)}", f"name{rng.randrange(40_000)}")
        assert (member in table) == (member in reference)
        table.add(member)
        reference.add(member)
    assert len(table) == len(reference)
    assert all(member in table for member in reference)


def test_stored_names_stay_distinct_at_scale() -> None:
    names = StoredNames()
    # 300 distinct paths claimed 30 times each, in two cases: suffixes up to ~60.
    asked = [f"artifacts/files/d{n % 3}/{'Ff'[n % 2]}{n % 100}" for n in range(9_000)]
    claimed = [names.claim(rel) for rel in asked]
    assert len(set(claimed)) == len(claimed)
    assert len({name.lower() for name in claimed}) == len(claimed)  # case twins apart too
