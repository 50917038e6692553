"""Our request parser against h11, on the corpus and on mutated requests.

h11 is a careful, widely used sans-IO HTTP/1.1 implementation.  Where both
parsers accept an input they must agree on every event, after normalizing
the differences we chose on purpose:

- h11 reports the HTTP version as sent ("1.2"); we serve any 1.x above 1.1
  as "1.1" (RFC 9110 §6.2).
- h11 rewrites the framing fields: it merges repeated Content-Length values
  into one and lowercases Transfer-Encoding.  We hand headers over as sent.
  Those two fields are compared through the body they frame instead.
- h11 closes after a request that does not keep the connection alive, and
  never keeps an HTTP/1.0 connection alive; events after that are ours only.
- We never read a request after CONNECT (RFC 9110 §9.3.6: what follows is
  the tunnel's); h11 reads on after a refused CONNECT.  h11's events stop
  at the end of a CONNECT here too.
- For an absolute-form target we give the target's authority as the Host
  field, added if the request had none (RFC 9112 §3.2.2); h11 hands Host
  over as sent.  h11's events get the same change before comparing.

Where only we accept, the input must show one of the things RFC 9112 allows
and h11 refuses (see ``WE_ACCEPT_H11_REFUSES``).  Where only h11 accepts, we
are stricter on purpose (docs/http11.md lists how), and nothing is compared.
Whatever the input, our parser raises nothing but ``errors.HTTPError``.
"""

from __future__ import annotations

import random
import re
from typing import Any, Dict, List, Optional

import h11
import pytest

from selectserver.errors import HTTPError
from tests.corpus import cases, mutations

VALID = cases.load("valid")
FUZZ_SEED = 20240611
FUZZ_INPUTS = 3000

# RFC 9112 rules h11 does not follow, as tests on the raw input.
WE_ACCEPT_H11_REFUSES = {
    # §2.2: empty lines before a request line are ignored (h11: "no request
    # line received"); a lone CR at the end may be the start of one.
    "empty_line_before_request": lambda raw: (
        raw.startswith(b"\r") or b"\r\n\r\n\r" in raw or raw.endswith(b"\r")),
    # §7.1.1: chunk-ext = *( BWS ";" ... ): whitespace may precede ";".
    "whitespace_before_chunk_extension": lambda raw: bool(
        re.search(rb"\n[0-9A-Fa-f]+[ \t]+;", raw)),
    # RFC 9110 §5.6.1: empty list elements are ignored (", chunked").
    "empty_transfer_coding_element": lambda raw: bool(
        re.search(rb"(?i)transfer-encoding:[ \t]*,", raw)),
    # RFC 9110 §8.6: Content-Length values are numbers; "5" and "05" agree
    # (h11 compares them as strings).
    "content_length_equal_numbers_spelled_differently": lambda raw: (
        _equal_numbers_spelled_differently(raw)),
}


def _equal_numbers_spelled_differently(raw: bytes) -> bool:
    head = raw.partition(b"\r\n\r\n")[0]
    values = [element.strip(b" \t")
              for value in re.findall(rb"(?i)\ncontent-length:[ \t]*([0-9, \t]*[0-9])", head)
              for element in value.split(b",")]
    return len(set(values)) > 1 and len({int(v) for v in values}) == 1

_FRAMING_FIELDS = ("content-length", "transfer-encoding")


def h11_parse(chunks: List[bytes]) -> List[Dict[str, Any]]:
    """Events from h11, in the corpus' JSON form, answering each request with
    an empty 404 so that h11 moves on to pipelined ones when it can."""
    connection = h11.Connection(h11.SERVER)
    events: List[Dict[str, Any]] = []
    for chunk in chunks:
        connection.receive_data(chunk)
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Request):
                events.append({
                    "type": "request",
                    "method": cases.text(event.method),
                    "target": cases.text(event.target),
                    "http_version": event.http_version.decode(),
                    "headers": host_from_target(event.target,
                                                cases.headers_json(event.headers)),
                })
            elif isinstance(event, h11.Data):
                events.append({"type": "data", "data": cases.text(event.data)})
            elif isinstance(event, h11.EndOfMessage):
                events.append({"type": "end", "trailers": cases.headers_json(event.headers)})
                requests = [e for e in events if e["type"] == "request"]
                if requests[-1]["method"] == "CONNECT":
                    return cases.merge_data(events)
                connection.send(h11.Response(status_code=404, headers=[("content-length", "0")]))
                connection.send(h11.EndOfMessage())
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return cases.merge_data(events)
                connection.start_next_cycle()
    return cases.merge_data(events)


def host_from_target(target: bytes, headers: List[List[str]]) -> List[List[str]]:
    """RFC 9112 §3.2.2 done to h11's headers: an http(s) absolute-form
    target's authority is the Host."""
    match = re.match(rb"(?i)https?://([^/?]*)", target)
    if not match:
        return headers
    authority = cases.text(match.group(1))
    if not any(name == "host" for name, _ in headers):
        return headers + [["host", authority]]
    return [[name, authority if name == "host" else value] for name, value in headers]


def normalize(events: List[Dict[str, Any]], ours: bool) -> List[Dict[str, Any]]:
    """Both parsers' events with the differences of the module docstring removed."""
    result = []
    for event in events:
        if event["type"] == "request":
            version = event["http_version"]
            if version.startswith("1.") and version != "1.0":
                version = "1.1"
            event = {
                "type": "request",
                "method": event["method"],
                "target": event["target"],
                "http_version": version,
                "headers": [h for h in event["headers"] if h[0] not in _FRAMING_FIELDS],
                "closes": ours and (not event["keep_alive"] or version == "1.0"),
            }
        result.append(event)
    if ours:
        # h11 stops after the end of the first message that closes.
        for index, event in enumerate(result):
            if event.get("closes"):
                end = next((i for i in range(index, len(result))
                            if result[i]["type"] == "end"), len(result) - 1)
                result = result[:end + 1]
                break
    for event in result:
        event.pop("closes", None)
    return result


def ours_or_error(chunks: List[bytes]) -> Optional[List[Dict[str, Any]]]:
    """Our events, or None if we refuse the input (only HTTPError allowed)."""
    try:
        return cases.parse(chunks)
    except HTTPError:
        return None


def h11_or_error(chunks: List[bytes]) -> Optional[List[Dict[str, Any]]]:
    try:
        return h11_parse(chunks)
    except h11.RemoteProtocolError:
        return None


def compare(chunks: List[bytes]) -> str:
    """Run both parsers; fail on a disagreement we did not choose.

    Returns which of them accepted, for the fuzz test's statistics.
    """
    raw = b"".join(chunks)
    ours, theirs = ours_or_error(chunks), h11_or_error(chunks)
    if ours is not None and theirs is not None:
        assert normalize(ours, True) == normalize(theirs, False), raw
        return "both"
    if ours is not None:
        reasons = [name for name, test in WE_ACCEPT_H11_REFUSES.items() if test(raw)]
        assert reasons, "we accept what h11 refuses: %r" % raw
        return "ours"
    return "h11" if theirs is not None else "neither"


@pytest.mark.parametrize("case", [c for c in VALID if "limits" not in c.spec],
                         ids=lambda c: c.name)
def test_valid_corpus(case):
    """Every valid case: both agree, or h11 refuses for a listed reason."""
    compare([case.raw])


def test_valid_corpus_mostly_agrees():
    """The list of differences stays a short list, not a way around the test."""
    outcomes = [compare([case.raw]) for case in VALID if "limits" not in case.spec]
    assert outcomes.count("both") >= len(outcomes) - 6


def test_fuzz():
    rng = random.Random(FUZZ_SEED)
    seeds = [case.raw for case in VALID if "limits" not in case.spec]
    outcomes = {"both": 0, "ours": 0, "h11": 0, "neither": 0}
    for _ in range(FUZZ_INPUTS):
        raw = mutations.mutate(rng, rng.choice(seeds))
        outcomes[compare(mutations.random_split(rng, raw))] += 1
    # The mutations must leave enough inputs that both accept to be a test.
    assert outcomes["both"] > FUZZ_INPUTS // 5, outcomes
