"""The journal's one rule for numbers, enforced where records are written: no floats, no
integer beyond 2**53 - 1, refused with the field's name before a byte is written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import journal_records

from manifests.journal import Journal, journal_safe
from manifests.signing import Signer


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.create(tmp_path / "custody.jsonl", Signer.generate_ephemeral())
    j.append("start", note="numbers")
    yield j
    j.close()


@pytest.mark.parametrize(
    ("fields", "error", "where"),
    [
        ({"ratio": 0.5}, TypeError, "field ratio is a float"),
        (
            {"state": {"routes": [{"metric": 1}, {"metric": 2.5}]}},
            TypeError,
            "state.routes[1].metric",
        ),
        ({"nan": float("nan")}, TypeError, "field nan is a float"),
        ({"inode": 2**64}, ValueError, "field inode is an integer beyond 2**53 - 1"),
        ({"deep": [[[-(2**60)]]]}, ValueError, "deep[0][0][0]"),
    ],
)
def test_a_float_or_huge_integer_is_refused_before_anything_is_written(
    journal: Journal, tmp_path: Path, fields: dict, error: type, where: str
) -> None:
    before = (tmp_path / "custody.jsonl").read_bytes()
    seq, head = journal.next_seq, journal.head
    with pytest.raises(error, match=r"journal record 'event': field ") as raised:
        journal.append("event", **fields)
    assert where in str(raised.value)
    assert (tmp_path / "custody.jsonl").read_bytes() == before
    assert (journal.next_seq, journal.head) == (seq, head)
    journal.append("event", fine=True)  # the chain goes on where it was
    assert [r["seq"] for r in journal_records(tmp_path)] == [0, 1]


def test_plain_records_and_non_ascii_keys_are_still_accepted(
    journal: Journal, tmp_path: Path
) -> None:
    journal.append("event", n=2**53 - 1, text="é日本", nested={"ключ": [1, None, True]})
    assert journal_records(tmp_path)[-1]["nested"] == {"ключ": [1, None, True]}


def test_foreign_json_is_made_journal_safe() -> None:
    assert journal_safe({"mtu": 1500, "rtt": 0.25, 7: [2**60, "x"]}) == {
        "mtu": 1500,
        "rtt": "0.25",
        "7": [str(2**60), "x"],
    }
