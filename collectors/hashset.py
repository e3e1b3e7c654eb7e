"""A set that remembers only a 64-bit hash of each member, in one flat table.

``StoredNames`` must remember every stored name of a run to keep the next one distinct,
and a million files is a million names: as a ``set`` of strings that is about 100 MB, as
this table 16 bytes a name (open addressing in an ``array`` of unsigned 64-bit words,
kept at most half full). Two members whose hashes collide count as one, so a name can
look taken when it is not: it then gets a ``~N`` suffix it did not need (at a million
names the odds are about one in 10^13). A taken name never looks free, which is the
property that matters: two files never share a stored name."""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable

_MASK64 = (1 << 64) - 1
_FIRST = 1024  # slots in a new table


class HashSet64:
    """Not thread-safe: the caller holds its lock."""

    def __init__(self) -> None:
        self._slots = array("Q", [0]) * _FIRST
        self._used = 0

    def __len__(self) -> int:
        return self._used

    @staticmethod
    def _key(member: Hashable) -> int:
        return (hash(member) & _MASK64) or 1  # 0 marks an empty slot

    def _find(self, key: int) -> int:
        """The slot holding ``key``, or the empty slot where it would go."""
        slots, mask = self._slots, len(self._slots) - 1
        i = key & mask
        while slots[i] and slots[i] != key:
            i = (i + 1) & mask
        return i

    def __contains__(self, member: Hashable) -> bool:
        return bool(self._slots[self._find(self._key(member))])

    def add(self, member: Hashable) -> None:
        key = self._key(member)
        i = self._find(key)
        if self._slots[i]:
            return
        self._slots[i] = key
        self._used += 1
        if 2 * self._used > len(self._slots):
            self._grow()

    def update(self, members: Iterable[Hashable]) -> None:
        """``add`` each of ``members``: the same table, in one loop over local names (140,000
        package paths: 0.12 s instead of 0.15 s of one ``add`` each, bench in RESULTS)."""
        slots, used = self._slots, self._used
        mask = len(slots) - 1
        for member in members:
            key = (hash(member) & _MASK64) or 1
            i = key & mask
            while slots[i]:
                if slots[i] == key:
                    break
                i = (i + 1) & mask
            else:
                slots[i] = key
                used += 1
                if 2 * used > mask + 1:
                    self._used = used
                    self._grow()
                    slots = self._slots
                    mask = len(slots) - 1
        self._used = used

    def _grow(self) -> None:
        old = self._slots
        slots = self._slots = array("Q", [0]) * (2 * len(old))
        mask = len(slots) - 1
        for key in old:
            if key:
                i = key & mask
                while slots[i]:
                    i = (i + 1) & mask
                slots[i] = key
