"""The parser's state table (http11/parser.py TRANSITIONS) is the truth.

The parser sets its state directly, without looking at the table, so this
test watches it: every corpus case, fed whole and a byte at a time, runs
through a parser that records each change of ``_state``.  A move the table
does not have fails, and so does a move in the table that never happens.
"""

from __future__ import annotations

from typing import List, Set, Tuple

from selectserver.errors import HTTPError
from selectserver.http11.events import NEED_DATA, PAUSED, Request
from selectserver.http11 import parser as parser_module
from selectserver.http11.parser import RequestParser
from tests.corpus import cases

_slot = RequestParser.__dict__["_state"]


class WatchedParser(RequestParser):
    """Records (old, new) for every assignment of ``_state``."""

    __slots__ = ("moves",)

    @property
    def _state(self) -> int:
        return _slot.__get__(self)

    @_state.setter
    def _state(self, new: int) -> None:
        try:
            old = _slot.__get__(self)
        except AttributeError:
            old = None   # __init__
        _slot.__set__(self, new)
        if old is not None and old != new:
            self.moves.append((old, new))


def drain_as_the_connection(parser: RequestParser, events: List[dict],
                            take_body: bool = False) -> bool:
    """Like the connection: after a request's head, next_request() at once
    (the app read no body), or with ``take_body`` after the whole body was
    taken, if it is here, as the WSGI handler takes it.  False once the
    parser may not be used again."""
    while True:
        event = parser.next_event()
        if event is NEED_DATA or event is PAUSED:
            return event is NEED_DATA
        events.append(cases.event_json(event))
        if isinstance(event, Request):
            if take_body:
                parser.take_body()
            if not event.keep_alive or not parser.next_request():
                return False


def watched_moves() -> Set[Tuple[str, str]]:
    names = parser_module.STATE_NAMES
    seen: Set[Tuple[str, str]] = set()
    for kind in ("valid", "invalid"):
        for case in cases.load(kind):
            raw = case.raw
            for chunks in ([raw], [raw[i:i + 1] for i in range(len(raw))]):
                for as_the_connection in (False, True, "taking bodies"):
                    parser = WatchedParser.__new__(WatchedParser)
                    parser.moves = []
                    parser.__init__(case.limits)
                    events: List[dict] = []
                    try:
                        for chunk in chunks:
                            parser.feed(chunk)
                            if not as_the_connection:
                                cases.drain(parser, events)
                            elif not drain_as_the_connection(
                                    parser, events, as_the_connection == "taking bodies"):
                                break
                    except HTTPError:
                        pass
                    seen.update((names[old], names[new]) for old, new in parser.moves)
    return seen


def test_the_parser_makes_exactly_the_moves_of_its_table():
    table = {(state, target) for state, moves in parser_module.TRANSITIONS.items()
             for target in moves.values()}
    seen = watched_moves()
    assert seen - table == set(), "moves the table does not have"
    assert table - seen == set(), "moves in the table the corpus never makes"


def test_every_state_has_a_name():
    states = [value for name, value in vars(parser_module).items()
              if name.isupper() and name.startswith("_") and isinstance(value, int)
              and value in parser_module.STATE_NAMES]
    assert sorted(parser_module.STATE_NAMES) == sorted(set(states))
