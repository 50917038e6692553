"""Loading corpus cases and running the request parser over them.

Shared by ``tests/unit/test_corpus.py`` (our parser on every case, split
every way) and ``tests/unit/test_against_h11.py`` (the same inputs through
h11).  The file format is described in ``tests/corpus/README.md``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional

from selectserver.http11.events import NEED_DATA, PAUSED, Data, EndOfMessage, Request
from selectserver.http11.parser import Limits, RequestParser

CORPUS_DIR = os.path.dirname(os.path.abspath(__file__))

# Request attributes a case may leave out of its JSON, with their value then.
REQUEST_DEFAULTS = {"expect_continue": False, "content_length": None, "chunked": False}


class Case(NamedTuple):
    name: str
    raw: bytes
    spec: Dict[str, Any]

    @property
    def limits(self) -> Optional[Limits]:
        return Limits(**self.spec["limits"]) if "limits" in self.spec else None


def load(kind: str) -> List[Case]:
    """Every case of ``kind`` ("valid" or "invalid"), sorted by name."""
    folder = os.path.join(CORPUS_DIR, kind)
    cases = []
    for filename in sorted(os.listdir(folder)):
        name, extension = os.path.splitext(filename)
        if extension != ".http":
            continue
        with open(os.path.join(folder, filename), "rb") as file:
            raw = file.read()
        with open(os.path.join(folder, name + ".json")) as file:
            spec = json.load(file)
        cases.append(Case(name, raw, spec))
    return cases


def splits(raw: bytes) -> Iterator[List[bytes]]:
    """The ways a case is fed: whole, a byte at a time, and in two pieces at
    every offset."""
    yield [raw]
    yield [raw[i:i + 1] for i in range(len(raw))]
    for i in range(1, len(raw)):
        yield [raw[:i], raw[i:]]


def text(data: bytes) -> str:
    """Bytes as the corpus JSON writes them: one character per byte."""
    return data.decode("latin-1")


def headers_json(headers: Iterable) -> List[List[str]]:
    return [[text(name), text(value)] for name, value in headers]


def event_json(event: object) -> Dict[str, Any]:
    """A parser event in the corpus' JSON form."""
    if isinstance(event, Request):
        return {
            "type": "request",
            "method": text(event.method),
            "target": text(event.target),
            "http_version": event.http_version,
            "headers": headers_json(event.headers),
            "keep_alive": event.keep_alive,
            "expect_continue": event.expect_continue,
            "content_length": event.content_length,
            "chunked": event.chunked,
        }
    if isinstance(event, Data):
        return {"type": "data", "data": text(event.data)}
    if isinstance(event, EndOfMessage):
        return {"type": "end", "trailers": headers_json(event.trailers)}
    raise AssertionError("not an event: %r" % (event,))


def expected_events(spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A valid case's events, with the request attributes it left out."""
    events = []
    for event in spec["events"]:
        if event["type"] == "request":
            event = dict(REQUEST_DEFAULTS, **event)
        events.append(event)
    return events


def merge_data(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Join consecutive data events: how a body is cut depends on the feeds."""
    merged: List[Dict[str, Any]] = []
    for event in events:
        if event["type"] == "data" and merged and merged[-1]["type"] == "data":
            merged[-1] = {"type": "data", "data": merged[-1]["data"] + event["data"]}
        elif event["type"] != "data" or event["data"]:
            merged.append(event)
    return merged


def drain(parser: RequestParser, events: List[Dict[str, Any]]) -> None:
    """Take every event the parser has, moving on to pipelined requests as
    the connection does: only after a request that keeps the connection."""
    while True:
        event = parser.next_event()
        # The count the parser keeps is what its buffer holds unread.
        assert parser.buffered_bytes == len(parser._buffer) - parser._offset
        if event is NEED_DATA:
            return
        if event is PAUSED:
            last_request = [e for e in events if e["type"] == "request"][-1]
            if not last_request["keep_alive"]:
                return   # the connection closes: what follows is never parsed
            assert parser.next_request()
            continue
        events.append(event_json(event))


def parse(chunks: Iterable[bytes], limits: Optional[Limits] = None) -> List[Dict[str, Any]]:
    """Feed ``chunks`` one by one and return the events, data merged.

    Raises whatever the parser raises.  Also checks, after each feed, that
    the buffer stays within the limits plus that one feed.
    """
    parser = RequestParser(limits)
    bound = max(parser.limits.max_header_bytes, parser.limits.max_request_line_bytes + 2)
    events: List[Dict[str, Any]] = []
    for chunk in chunks:
        parser.feed(chunk)
        assert parser.buffered_bytes == len(parser._buffer) - parser._offset
        drain(parser, events)
        assert parser.buffered_bytes <= bound + len(chunk)
    return merge_data(events)
