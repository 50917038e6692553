"""Fuzzing the request parser alone: nothing a client sends may break it.

Random bytes, mutated corpus requests and random feed boundaries, with
small and default limits.  The parser may only return events or raise
``errors.HTTPError``, its buffer must stay within the limits plus one feed,
and an input must get the same outcome however it is split.
"""

from __future__ import annotations

import random

import pytest

from selectserver.errors import HTTPError
from selectserver.http11.parser import Limits
from tests.corpus import cases, mutations

SEED = 97531
SMALL = Limits(max_request_line_bytes=40, max_header_bytes=120, max_header_count=4,
               max_body_bytes=16)
SEEDS = [case.raw for case in cases.load("valid")] + [case.raw for case in cases.load("invalid")]


def outcome(chunks, limits):
    """The events, or the status of the error; parse() checks the buffer bound."""
    try:
        return cases.parse(chunks, limits)
    except HTTPError as error:
        assert 400 <= error.status <= 505
        return error.status


def random_input(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    if kind == 1:
        alphabet = mutations.INTERESTING + b"GETPOSHT/1. "
        return bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 300)))
    return mutations.mutate(rng, rng.choice(SEEDS))


@pytest.mark.parametrize("limits", [None, SMALL], ids=["default_limits", "small_limits"])
def test_fuzz_only_http_errors_and_same_outcome_however_split(limits):
    rng = random.Random(SEED)
    for _ in range(4000):
        data = random_input(rng)
        whole = outcome([data], limits)
        assert outcome(mutations.random_split(rng, data), limits) == whole, data


def test_fuzz_bytewise_matches_whole():
    rng = random.Random(SEED + 1)
    for _ in range(200):
        data = random_input(rng)
        assert outcome([data[i:i + 1] for i in range(len(data))], SMALL) == outcome([data], SMALL)


def test_fuzz_garbage_stream_stays_bounded():
    """An endless stream of random bytes ends in an error, never in growth."""
    rng = random.Random(SEED + 2)
    for _ in range(50):
        chunks = [bytes(rng.choice(b"ab \r\n:\t") for _ in range(64)) for _ in range(200)]
        # parse() checks the buffer bound after every feed; 12.8 kB against
        # a 120-byte head limit must end in an error.
        with pytest.raises(HTTPError):
            cases.parse(chunks, SMALL)
