"""The usual response's shortcut in ResponseWriter.respond() against the full rules.

respond() answers the usual response (a status with a body, to a keep-alive
HTTP/1.1 request other than HEAD, with fields remembered as a plain shape and
a body that matches their Content-Length) without going through each rule.
Fields given as lists of lists are never remembered, so they always take the
full rules: every test here answers the same request both ways and wants the
same bytes, the same writer state, the same later behaviour and the same
InvalidResponse.
"""

from __future__ import annotations

import http
import itertools

import pytest

from selectserver.errors import InvalidResponse
from selectserver.http11 import grammar
from selectserver.http11 import writer as writer_module
from selectserver.http11.events import Request
from selectserver.http11.writer import ResponseWriter

DS = b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\nserver: selectserver\r\n"
CT = (b"content-type", b"text/plain")
CL5 = (b"content-length", b"5")

STATUSES = [100, 101, 103, 199, 200, 201, 204, 206, 299, 304, 307, 404, 500, 599, 999,
            99, 1000, http.HTTPStatus.OK, True, 200.0, "200"]

# (method, version, the request's keep_alive, the connection turns keep-alive off)
REQUESTS = [
    (b"GET", "1.1", True, False),
    (b"POST", "1.1", True, False),
    (b"HEAD", "1.1", True, False),
    (b"CONNECT", "1.1", False, False),
    (b"CONNECT", "1.1", True, False),     # not from our parser; still the full rules
    (b"OPTIONS", "1.1", False, False),
    (b"GET", "1.1", True, True),          # the worker is stopping (RUNNING_LAST)
    (b"GET", "1.0", True, False),
    (b"GET", "1.0", False, False),
]

HEADERS = [
    [CT, CL5],
    [CL5],
    [(b"Content-Length", b"5"), CT, (b"vary", b"accept")],
    [CL5, CL5],
    [(b"content-length", b"4")],
    [(b"content-length", b"0")],
    [CT],
    [],
    [CL5, (b"connection", b"close")],
    [CL5, (b"Connection", b"keep-alive")],
    [CL5, (b"connection", b"upgrade"), (b"upgrade", b"websocket")],
    [CL5, (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT")],
    [(b"server", b"mine"), CL5],
    [(b"transfer-encoding", b"chunked"), CT],
    # wrong: each must raise as the full rules raise
    [CL5, (b"bad name", b"x")],
    [CL5, (b"x", b"a\r\nb")],
    [(b"content-length", b"5"), (b"content-length", b"6")],
    [(b"transfer-encoding", b"chunked"), CL5],
    [CL5, (b"x", "text")],
]

BODIES = [b"hello", b"hell", b"hello!", b"", bytearray(b"hello"), memoryview(b"hello"),
          "hello"]


USUAL = REQUESTS[0]


def new_writer(method, version, keep_alive, stopping):
    w = ResponseWriter(Request(method, b"/", version, [(b"host", b"a")], keep_alive))
    if stopping:
        w.keep_alive = False   # what the connection does for its last response
    return w


def then(call, *args):
    try:
        return call(*args)
    except InvalidResponse as exc:
        return ("raised", str(exc))


def outcome(req, status, headers, body, end):
    """respond()'s bytes or error, the writer's state, and what it does next."""
    w = new_writer(*req)
    try:
        data = w.respond(status, headers, DS, body, end)
    except InvalidResponse as exc:
        data = ("raised", str(exc))
    state = (w.status, type(w.status), w.keep_alive, w.bytes_sent, w.started,
             w.finished, w._framing, w._remaining)
    return (data, state, then(w.file_body, 1), then(w.body, b"x"), then(w.end),
            w.keep_alive, w.bytes_sent)


def as_lists(headers):
    return [list(field) for field in headers]   # never remembered: the full rules


def check(req, status, headers, body, end):
    expected = outcome(req, status, as_lists(headers), body, end)
    writer_module._SHAPES.clear()
    first = outcome(req, status, tuple(headers), body, end)    # remembers the shape
    # ... or a usual response does, if this one does not (HEAD, 204 ...)
    outcome(USUAL, 200, tuple(headers), b"hello", True)
    again = outcome(req, status, tuple(headers), body, end)
    as_list = outcome(req, status, list(headers), body, end)
    assert first == again == as_list == expected, (req, status, headers, body, end)


@pytest.mark.parametrize("req", REQUESTS, ids=repr)
def test_the_shortcut_answers_as_the_full_rules(req):
    for status, headers, body, end in itertools.product(
            STATUSES, HEADERS, BODIES, (True, False)):
        check(req, status, headers, body, end)


def test_every_known_status_answers_as_the_full_rules():
    for status in grammar.REASON_PHRASES:
        for req in REQUESTS[:3]:
            check(req, status, [CT, CL5], b"hello", True)


def test_the_shortcut_is_taken_for_the_usual_response_only(monkeypatch):
    # A marked status line shows which way respond() went.
    marked = {status: b"<usual>" for status in writer_module._STATUS_LINES_WITH_BODY}
    monkeypatch.setattr(writer_module, "_STATUS_LINES_WITH_BODY", marked)
    usual = USUAL
    fields = (CT, CL5)

    def went_usual(req=usual, status=200, headers=fields, body=b"hello", end=True):
        writer_module._SHAPES.clear()
        new_writer(*usual).respond(200, headers, DS, b"hello", True)   # remembers the shape
        return new_writer(*req).respond(status, headers, DS, body, end).startswith(b"<usual>")

    assert went_usual()
    assert went_usual(req=(b"POST", "1.1", True, False), status=404)
    assert went_usual(headers=[CT, CL5])
    assert went_usual(headers=((b"content-length", b"0"),), body=b"")
    assert not went_usual(end=False)
    assert not went_usual(body=b"hell")
    assert not went_usual(body=bytearray(b"hello"))
    assert not went_usual(status=204)
    assert not went_usual(status=304)
    assert not went_usual(status=101)
    assert not went_usual(status=http.HTTPStatus.OK)
    assert not went_usual(req=(b"HEAD", "1.1", True, False))
    assert not went_usual(req=(b"GET", "1.0", True, False))
    assert not went_usual(req=(b"GET", "1.1", False, False))
    assert not went_usual(req=(b"GET", "1.1", True, True))
    assert not went_usual(headers=(CT,))
    assert not went_usual(headers=(CL5, (b"connection", b"close")))
    assert not went_usual(headers=(CL5, (b"server", b"mine")))


def test_a_plain_shape_is_remembered_with_its_head_end():
    writer_module._SHAPES.clear()
    new_writer(b"GET", "1.1", True, False).respond(200, [CT, CL5], DS, b"hello", True)
    shape = writer_module._SHAPES[(CT, CL5)]
    lines = b"content-type: text/plain\r\ncontent-length: 5\r\n"
    assert shape == (lines, 5, False, False, (), 5, lines + b"\r\n")
    writer_module._SHAPES.clear()
    new_writer(b"GET", "1.1", True, False).respond(200, [CT], DS, b"hello", True)
    assert writer_module._SHAPES[(CT,)][5:] == (-1, None)
