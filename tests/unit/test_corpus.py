"""Every corpus case through the request parser, fed every way.

A case runs whole, one byte at a time, and split in two at every offset
(h11's ``t_body_reader``, gunicorn's ``treq.py``): the events, and for an
invalid case the status, must not depend on how the bytes arrived.
"""

from __future__ import annotations

import pytest

from selectserver.errors import HTTPError
from selectserver.http11.events import NEED_DATA, PAUSED
from selectserver.http11.parser import RequestParser
from tests.corpus import cases

VALID = cases.load("valid")
INVALID = cases.load("invalid")
MODES = ["whole", "bytewise", "every_split"]


def feeds(raw: bytes, mode: str):
    """The list of feed lists a mode stands for."""
    ways = cases.splits(raw)
    whole, bytewise = next(ways), next(ways)
    if mode == "whole":
        return [whole]
    if mode == "bytewise":
        return [bytewise]
    return list(ways)


def test_corpus_is_large_enough():
    assert len(VALID) >= 40
    assert len(INVALID) >= 60


@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
@pytest.mark.parametrize("mode", MODES)
def test_valid(case, mode):
    expected = cases.expected_events(case.spec)
    for chunks in feeds(case.raw, mode):
        assert cases.parse(chunks, case.limits) == expected, chunks


@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
def test_valid_leaves_parser_ready(case):
    """After the last message, nothing is left over and a new head is
    awaited; or, after one that closes the connection, nothing more is read."""
    parser = RequestParser(case.limits)
    parser.feed(case.raw)
    events: list = []
    cases.drain(parser, events)
    if [e for e in events if e["type"] == "request"][-1]["keep_alive"]:
        assert parser.buffered_bytes == 0
        assert parser.next_event() is NEED_DATA
    else:
        assert parser.next_event() is PAUSED


@pytest.mark.parametrize("case", INVALID, ids=[c.name for c in INVALID])
@pytest.mark.parametrize("mode", MODES)
def test_invalid(case, mode):
    for chunks in feeds(case.raw, mode):
        with pytest.raises(HTTPError) as info:
            cases.parse(chunks, case.limits)
        assert info.value.status == case.spec["status"], (chunks, info.value)


def test_corpus_files_pair_up():
    for kind in ("valid", "invalid"):
        for case in cases.load(kind):
            assert case.raw, case.name
            key = "events" if kind == "valid" else "status"
            assert key in case.spec, case.name
