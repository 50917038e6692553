"""The parser's shortcuts for usual heads: they must change nothing.

A head whose field lines were all seen before, as one block, skips their
octet check and their parsing (parser.py, "known-field-blocks"), and with
such a block a request line seen before skips its checks too
("known-request-lines"); the usual sets of interpreted fields are framed
without _request() ("usual-framing").  Every input must still get what the
general path gives: the same events, and for a fault the same exception
class and message.  Each case is parsed with the caches empty, then with
its field block known, then with its request line known as well; and with
the usual framing, then without it.
"""

from __future__ import annotations

import itertools

import pytest

from selectserver.errors import HTTPError
from selectserver.http11 import parser as parser_module
from selectserver.http11.events import NEED_DATA, Request
from selectserver.http11.parser import Limits, RequestParser
from tests.corpus import cases

VALID = cases.load("valid")
INVALID = cases.load("invalid")
BLOCK = b"Host: a\r\nUser-Agent: t\r\nAccept: */*"


def outcome(raw, limits=None):
    """The events of ``raw`` fed whole, or the class and message of its error."""
    try:
        return cases.parse([raw], limits)
    except HTTPError as error:
        return type(error), str(error)


def cold_and_warm(raw, limits=None, block=None):
    """The outcome with no known block, then with ``raw``'s block known.

    A third parse, with the whole head known too if it was good, must give
    the second's outcome.
    """
    if block is None:
        block = raw.partition(b"\r\n")[2].partition(b"\r\n\r\n")[0]
    parser_module._FIELD_BLOCKS.clear()
    parser_module._HEADS.clear()
    cold = outcome(raw, limits)
    # Made known (if it is good) by a request with another request line.
    priming = RequestParser()
    priming.feed(b"GET / HTTP/1.1\r\n" + block + b"\r\n\r\n")
    try:
        priming.next_event()
    except HTTPError:
        pass
    warm = outcome(raw, limits)
    assert outcome(raw, limits) == warm, "with the head known"
    return cold, warm


@pytest.mark.parametrize("case", VALID + INVALID, ids=[c.name for c in VALID + INVALID])
def test_corpus_case_same_with_its_block_known(case):
    cold, warm = cold_and_warm(case.raw, case.limits)
    assert warm == cold


REQUEST_LINES = [
    b"GET / HTTP/1.1", b"POST /a?b=c HTTP/1.0", b"OPTIONS * HTTP/1.1", b"GET http://x/y HTTP/1.1",
    b"CONNECT x:443 HTTP/1.1", b"BREW /pot HTTP/1.1", b"GET / HTTP/2.0", b"GET / HTTP/1.2",
    b"GET /#f HTTP/1.1", b"GET  / HTTP/1.1", b"GET / HTTP/1.1 ", b"G@T / HTTP/1.1", b"GET",
    b"", b"GET x HTTP/1.1", b"GET / http/1.1",
]


@pytest.mark.parametrize("line", REQUEST_LINES)
def test_request_line_octets_same_with_the_block_known(line):
    # Every octet at the start, in the middle and at the end of a request
    # line, in front of a known block: the request line alone is checked then.
    for octet in range(256):
        for at in {0, len(line) // 2, len(line)}:
            raw = line[:at] + bytes([octet]) + line[at:] + b"\r\n" + BLOCK + b"\r\n\r\n"
            cold, warm = cold_and_warm(raw, block=BLOCK)
            assert warm == cold, raw


def test_limits_apply_to_a_known_block():
    # The block is known from a parser with default limits; a stricter one
    # still counts its fields and measures its request line.
    small = Limits(max_header_count=2, max_request_line_bytes=14)
    cold, warm = cold_and_warm(b"GET / HTTP/1.1\r\n" + BLOCK + b"\r\n\r\n", small)
    assert warm == cold and cold[0].status == 431
    cold, warm = cold_and_warm(b"GET /ab HTTP/1.1\r\n" + BLOCK + b"\r\n\r\n", Limits(
        max_request_line_bytes=14))
    assert warm == cold and cold[0].status == 414


def test_each_request_gets_its_own_headers_list():
    raw = b"GET / HTTP/1.1\r\n" + BLOCK + b"\r\n\r\n"
    parser = RequestParser()
    parser.feed(raw * 2)
    first = parser.next_event()
    first.headers.append((b"x-added", b"by the app"))
    first.headers[0] = (b"host", b"changed")
    assert parser.next_request()
    second = parser.next_event()
    assert second.headers == [(b"host", b"a"), (b"user-agent", b"t"), (b"accept", b"*/*")]
    assert parser.next_request() and parser.next_event() is NEED_DATA


def test_only_good_blocks_are_kept():
    parser_module._FIELD_BLOCKS.clear()
    for raw in (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a\r\n y\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"):
        assert isinstance(outcome(raw), tuple)
    assert parser_module._FIELD_BLOCKS == {}
    # A fault of the request line or of the fields' meaning is found again
    # each time: the block itself is good and may be kept.
    assert outcome(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")[0].status == 400
    assert outcome(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")[0].status == 400


def test_known_blocks_are_bounded():
    parser_module._FIELD_BLOCKS.clear()
    for i in range(parser_module._FIELD_BLOCKS_MAX + 10):
        assert outcome(b"GET / HTTP/1.1\r\nHost: a\r\nX: %d\r\n\r\n" % i)[0]["type"] == "request"
    assert len(parser_module._FIELD_BLOCKS) <= parser_module._FIELD_BLOCKS_MAX
    long_block = b"Host: a\r\nCookie: " + b"c" * parser_module._FIELD_BLOCK_MAX_BYTES
    outcome(b"GET / HTTP/1.1\r\n" + long_block + b"\r\n\r\n")
    assert long_block not in parser_module._FIELD_BLOCKS


def test_only_heads_with_a_good_origin_form_line_and_a_known_block_are_kept():
    parser_module._FIELD_BLOCKS.clear()
    parser_module._HEADS.clear()
    outcome(b"GET /first HTTP/1.1\r\n" + BLOCK + b"\r\n\r\n")
    assert parser_module._HEADS == {}   # its block was not known yet
    for line in REQUEST_LINES:
        outcome(line + b"\r\n" + BLOCK + b"\r\n\r\n")
    assert set(parser_module._HEADS) == {line + b"\r\n" + BLOCK for line in (
        b"GET / HTTP/1.1", b"POST /a?b=c HTTP/1.0", b"BREW /pot HTTP/1.1", b"GET / HTTP/1.2")}
    method, target, version, line_bytes, block = parser_module._HEADS[
        b"GET / HTTP/1.2\r\n" + BLOCK]
    assert (method, target, version, line_bytes) == (b"GET", b"/", "1.1", 14)
    assert block is parser_module._FIELD_BLOCKS[BLOCK]


def test_the_parsers_own_limits_apply_to_a_known_head():
    raw = b"GET /abc HTTP/1.1\r\n" + BLOCK + b"\r\n\r\n"
    parser_module._HEADS.clear()
    for _ in range(2):
        assert outcome(raw)[0]["type"] == "request"
    assert raw[:-4] in parser_module._HEADS
    assert outcome(raw, Limits(max_request_line_bytes=16))[0].status == 414
    assert outcome(raw, Limits(max_header_count=2))[0].status == 431
    assert outcome(raw, Limits(max_header_bytes=40))[0].status == 431


def test_known_heads_are_bounded():
    parser_module._HEADS.clear()
    for i in range(parser_module._HEADS_MAX + 10):
        assert outcome(b"GET /%d HTTP/1.1\r\n%s\r\n\r\n" % (i, BLOCK))[0]["type"] == "request"
    assert 0 < len(parser_module._HEADS) <= parser_module._HEADS_MAX
    long_line = b"GET /" + b"a" * parser_module._HEAD_MAX_BYTES + b" HTTP/1.1"
    for _ in range(2):
        assert outcome(long_line + b"\r\n" + BLOCK + b"\r\n\r\n")[0]["type"] == "request"
    assert not any(head.startswith(long_line) for head in parser_module._HEADS)


HOSTS = [b"Host: a", b"Host: a.example:8000", b"Host: bad host", b"Host: ", b"host: [::1]"]
OTHERS = [
    b"", b"Connection: close", b"Connection: Keep-Alive", b"Connection: keep-alive",
    b"Connection: upgrade", b"Connection: close, keep-alive", b"Connection:",
    b"Content-Length: 0", b"Content-Length: 5", b"Content-Length: 05", b"Content-Length: 11",
    b"Content-Length: 5, 5", b"Content-Length: +5", b"Content-Length: ",
    b"Content-Length: 9999999999999999999", b"Transfer-Encoding: chunked", b"Expect: 100-continue",
    b"Upgrade: websocket", b"Host: a",
]
LINES = [b"GET / HTTP/1.1", b"POST /p?q HTTP/1.0", b"GET http://a/ HTTP/1.1",
         b"OPTIONS * HTTP/1.1", b"CONNECT a:1 HTTP/1.1"]


@pytest.mark.parametrize("limits", [None, Limits(max_body_bytes=10)], ids=["no_limit", "limit"])
def test_usual_framing_gives_what_the_full_rules_give(limits, monkeypatch):
    # Every pair of a Host (or none) and another interpreted field, either
    # order, under every request line: the same outcome with the shortcut,
    # cold and with the block known, as without it.
    heads = []
    for line, host, other in itertools.product(LINES, HOSTS + [b""], OTHERS):
        for fields in {(host, other), (other, host)}:
            block = b"\r\n".join(f for f in fields + (b"X-Other: x",) if f)
            heads.append(line + b"\r\n" + block + b"\r\n\r\n" + b"12345")
    with_shortcut = []
    for raw in heads:
        parser_module._FIELD_BLOCKS.clear()
        with_shortcut.append((outcome(raw, limits), outcome(raw, limits)))
    monkeypatch.setattr(parser_module, "_usual_framing", lambda semantic: None)
    parser_module._FIELD_BLOCKS.clear()
    for raw, (cold, warm) in zip(heads, with_shortcut):
        general = outcome(raw, limits)
        assert cold == general, raw
        assert warm == general, raw


USUAL_HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /x?y HTTP/1.0\r\nHost: a\r\nX: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: close\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"POST / HTTP/1.0\r\nContent-Length: 5\r\nHost: a\r\n\r\n12345",
]


@pytest.mark.parametrize("raw", USUAL_HEADS)
def test_usual_requests_are_what_request_makes(raw, monkeypatch):
    # The usual framing fills a Request's slots itself, without Request():
    # every slot must hold what the general path's Request(...) holds.
    def slots():
        parser = RequestParser()
        parser.feed(raw)
        request = parser.next_event()
        assert type(request) is Request
        return [getattr(request, name) for name in Request.__slots__]

    parser_module._FIELD_BLOCKS.clear()
    cold, warm = slots(), slots()
    monkeypatch.setattr(parser_module, "_usual_framing", lambda semantic: None)
    parser_module._FIELD_BLOCKS.clear()
    assert cold == warm == slots()
