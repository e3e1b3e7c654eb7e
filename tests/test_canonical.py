"""Canonical JSON: our fast path must equal the RFC 8785 reference byte for byte."""

from __future__ import annotations

import random

import pytest
import rfc8785

from manifests import canonical
from manifests.errors import CanonicalError


def _random_value(rng: random.Random, depth: int = 0):  # type: ignore[no-untyped-def]
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.randrange(-(2**53) + 1, 2**53)
    if kind == 1:
        alphabet = 'aZ09 "\\\n\t\x00\x1f\x7f/é日本\U0001f600\ufeff\u2028'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return str(rng.getrandbits(64))
    if kind == 4:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["seq", "prev", "type", "a", "B", "_x", "path_b64", "z9", "Z"]
    return {k: _random_value(rng, depth + 1) for k in rng.sample(keys, rng.randrange(len(keys)))}


def test_fast_path_matches_reference_on_random_records() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        value = {"seq": 1, "data": _random_value(rng)}
        assert canonical.dumps(value) == rfc8785.dumps(value)


def test_non_ascii_keys_use_the_reference_ordering() -> None:
    value = {"\U0001f600": 1, "\ufb01": 2, "a": 3}  # UTF-16 order differs from code points
    assert canonical.dumps(value) == rfc8785.dumps(value)
    assert canonical.dumps(value) != canonical._fast.encode(value).encode()


def test_big_integers_and_floats_are_refused_or_canonical() -> None:
    with pytest.raises(CanonicalError):
        canonical.dumps({"n": 2**64})
    assert canonical.dumps({"f": 1.5}) == b'{"f":1.5}'


@pytest.mark.parametrize(
    "line",
    [
        b'{"a":1,"a":2}',
        b'{"a": 1}',
        b'{"b":1,"a":2}',
        b'{"a":NaN}',
        b'{"a":"\\u0041"}',
        b"\xff",
    ],
)
def test_strict_parser_refuses(line: bytes) -> None:
    with pytest.raises(CanonicalError):
        canonical.loads_strict(line)


def test_strict_parser_accepts_canonical() -> None:
    assert canonical.loads_strict(b'{"a":[1,"x"],"b":null}') == {"a": [1, "x"], "b": None}
