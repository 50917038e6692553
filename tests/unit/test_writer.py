"""ResponseWriter and error_response: exact bytes for each framing rule.

Every test builds the Request the writer answers by hand, so that a
writer test never depends on the parser.
"""

from __future__ import annotations

import http

import pytest

from selectserver.errors import InvalidResponse
from selectserver.http11 import grammar
from selectserver.http11.events import Request
from selectserver.http11.writer import CONTINUE, ResponseWriter, error_response

DATE_SERVER = b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\nserver: selectserver\r\n"
DS = DATE_SERVER


def request(method=b"GET", version="1.1", keep_alive=None):
    if keep_alive is None:
        keep_alive = version == "1.1"
    return Request(method, b"/", version, [(b"host", b"a")], keep_alive)


def writer(**kwargs):
    return ResponseWriter(request(**kwargs))


def head(status=200, headers=(), **kwargs):
    w = writer(**kwargs)
    return w, w.head(status, headers, DS)


# -- the head --------------------------------------------------------------------


def test_typical_response_with_content_length():
    w, data = head(200, [(b"content-type", b"text/plain"), (b"content-length", b"5")])
    assert data == (b"HTTP/1.1 200 OK\r\n" + DS + b"content-type: text/plain\r\n"
                    b"content-length: 5\r\n\r\n")
    assert w.body(b"hello") == b"hello"
    assert w.end() == b""
    assert (w.status, w.keep_alive, w.bytes_sent, w.started, w.finished) == (
        200, True, 5, True, True)


def test_without_content_length_http11_is_chunked():
    w, data = head(200, [(b"content-type", b"text/plain")])
    assert data == (b"HTTP/1.1 200 OK\r\n" + DS + b"content-type: text/plain\r\n"
                    b"transfer-encoding: chunked\r\n\r\n")
    assert w.body(b"hello") == b"5\r\nhello\r\n"
    assert w.body(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert w.body(b"") == b""
    assert w.end() == b"0\r\n\r\n"
    assert w.keep_alive and w.bytes_sent == 31


def test_without_content_length_http10_is_close_delimited():
    w, data = head(200, [], version="1.0", keep_alive=True)
    assert data == b"HTTP/1.1 200 OK\r\n" + DS + b"connection: close\r\n\r\n"
    assert not w.keep_alive
    assert w.body(b"abc") == b"abc"
    assert w.end() == b""


def test_http10_keep_alive_with_content_length():
    w, data = head(200, [(b"content-length", b"0")], version="1.0", keep_alive=True)
    assert data == (b"HTTP/1.1 200 OK\r\n" + DS + b"content-length: 0\r\n"
                    b"connection: keep-alive\r\n\r\n")
    assert w.keep_alive


def test_http10_without_keep_alive_closes():
    w, data = head(200, [(b"content-length", b"0")], version="1.0", keep_alive=False)
    assert data.endswith(b"content-length: 0\r\nconnection: close\r\n\r\n")
    assert not w.keep_alive


def test_http10_keep_alive_token_from_app_is_not_repeated():
    w, data = head(200, [(b"content-length", b"0"), (b"Connection", b"Keep-Alive")],
                   version="1.0", keep_alive=True)
    assert data.count(b"onnection") == 1 and w.keep_alive


def test_client_asked_to_close():
    w, data = head(200, [(b"content-length", b"0")], keep_alive=False)
    assert data.endswith(b"content-length: 0\r\nconnection: close\r\n\r\n")
    assert not w.keep_alive


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close", b" CLOSE "])
def test_app_asks_to_close(value):
    w, data = head(200, [(b"content-length", b"0"), (b"connection", value)])
    assert not w.keep_alive
    assert data.count(b"connection") == 1       # the app's own line is enough


def test_app_connection_keep_alive_cannot_keep_a_closing_connection_open():
    w, data = head(200, [(b"connection", b"keep-alive")], keep_alive=False)
    assert not w.keep_alive
    assert data.endswith(b"connection: keep-alive\r\ntransfer-encoding: chunked\r\n"
                         b"connection: close\r\n\r\n")


def test_header_names_and_values_are_sent_as_given():
    _, data = head(200, [(b"X-CamelCase", b"Value With  Spaces"), (b"content-length", b"0")])
    assert b"\r\nX-CamelCase: Value With  Spaces\r\n" in data


def test_repeated_headers_are_kept():
    _, data = head(200, [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                         (b"content-length", b"0")])
    assert b"set-cookie: a=1\r\nset-cookie: b=2\r\n" in data


def test_headers_may_be_any_iterable_of_pairs():
    _, data = head(200, iter([[b"content-length", b"0"]]))
    assert data.endswith(b"content-length: 0\r\n\r\n")


def test_empty_header_value_is_allowed():
    _, data = head(200, [(b"x-empty", b""), (b"content-length", b"0")])
    assert b"\r\nx-empty: \r\n" in data


def test_obs_text_and_tab_in_value_are_allowed():
    _, data = head(200, [(b"x", b"caf\xe9\tb"), (b"content-length", b"0")])
    assert b"\r\nx: caf\xe9\tb\r\n" in data


def test_bytearray_and_memoryview_values():
    _, data = head(200, [(b"x", bytearray(b"ba")), (b"content-length", memoryview(b"0"))])
    assert b"x: ba\r\ncontent-length: 0\r\n" in data


# -- status ----------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(set(grammar.REASON_PHRASES) - {100, 103}))
def test_known_status_lines(status):
    w, data = head(status, [(b"content-length", b"0")])
    assert data.startswith(b"HTTP/1.1 %d %s\r\n" % (status, grammar.REASON_PHRASES[status]))
    assert w.status == status


@pytest.mark.parametrize("status", [299, 599, 999, 432, 218])
def test_unknown_status_has_empty_reason(status):
    _, data = head(status, [(b"content-length", b"0")])
    assert data.startswith(b"HTTP/1.1 %d \r\n" % status)


def test_int_enum_status():
    w, data = head(http.HTTPStatus.NOT_FOUND, [(b"content-length", b"0")])
    assert data.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert w.status == 404 and type(w.status) is int


@pytest.mark.parametrize("status", [0, 99, 1000, -200, 200.0, "200", b"200", None, True, [200]])
def test_invalid_status(status):
    with pytest.raises(InvalidResponse):
        head(status)


@pytest.mark.parametrize("status", [100, 102, 103, 199])
def test_interim_responses_other_than_101_are_refused(status):
    with pytest.raises(InvalidResponse):
        head(status)


def test_reason_phrases_follow_rfc_9110():
    assert grammar.REASON_PHRASES[413] == b"Content Too Large"
    assert grammar.REASON_PHRASES[422] == b"Unprocessable Content"
    assert grammar.REASON_PHRASES[414] == b"URI Too Long"
    for status, reason in grammar.REASON_PHRASES.items():
        assert 100 <= status <= 599 and reason and b"\r" not in reason


# -- bodies that are not sent ----------------------------------------------------------


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status):
    w, data = head(status, [(b"x", b"y")])
    assert b"transfer-encoding" not in data
    assert w.body(b"dropped") == b""
    assert w.end() == b""
    assert w.keep_alive and w.bytes_sent == 0


def test_204_drops_app_framing_headers():
    # RFC 9110 §8.6: no Content-Length in a 204; RFC 9112 §6.1: no TE either.
    for field in [(b"content-length", b"0"), (b"Transfer-Encoding", b"chunked")]:
        w, data = head(204, [field])
        assert data == b"HTTP/1.1 204 No Content\r\n" + DS + b"\r\n"
        assert w.keep_alive


def test_304_keeps_app_content_length():
    w, data = head(304, [(b"content-length", b"120")])
    assert data == b"HTTP/1.1 304 Not Modified\r\n" + DS + b"content-length: 120\r\n\r\n"
    assert w.body(b"x") == b"" and w.end() == b"" and w.keep_alive


def test_head_request_keeps_app_framing_and_sends_no_body():
    w, data = head(200, [(b"content-length", b"5")], method=b"HEAD")
    assert data == b"HTTP/1.1 200 OK\r\n" + DS + b"content-length: 5\r\n\r\n"
    assert w.body(b"hello") == b""
    assert w.end() == b""
    assert w.keep_alive and w.bytes_sent == 0


def test_head_request_without_content_length_gets_no_chunked():
    w, data = head(200, [], method=b"HEAD")
    assert data == b"HTTP/1.1 200 OK\r\n" + DS + b"\r\n"
    assert w.keep_alive


def test_head_request_keeps_app_transfer_encoding():
    _, data = head(200, [(b"transfer-encoding", b"chunked")], method=b"HEAD")
    assert data == b"HTTP/1.1 200 OK\r\n" + DS + b"transfer-encoding: chunked\r\n\r\n"


def test_head_request_on_http10_stays_open_if_asked():
    w, data = head(200, [], method=b"HEAD", version="1.0", keep_alive=True)
    assert w.keep_alive and data.endswith(b"connection: keep-alive\r\n\r\n")


def test_101_switching_protocols():
    headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
               (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")]
    w, data = head(101, headers)
    assert data == (b"HTTP/1.1 101 Switching Protocols\r\n" + DS + b"upgrade: websocket\r\n"
                    b"connection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                    b"\r\n\r\n")
    assert not w.keep_alive           # no further HTTP request on this connection
    assert w.body(b"") == b"" and w.end() == b""


# -- Content-Length from the app ---------------------------------------------------------


# RFC 9110 §9.3.6: a 2xx answer to CONNECT starts a tunnel.  The parser gives
# every CONNECT keep_alive False: we never tunnel, and never read what follows.


@pytest.mark.parametrize("status", [200, 204, 299])
@pytest.mark.parametrize("framing", [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")])
def test_2xx_to_connect_has_no_framing_and_no_body(status, framing):
    w = writer(method=b"CONNECT", keep_alive=False)
    data = w.respond(status, [framing, (b"x", b"y")], DS, b"hello", True)
    assert data.partition(b"\r\n")[2] == DS + b"x: y\r\nconnection: close\r\n\r\n"
    assert (w.keep_alive, w.bytes_sent, w.finished) == (False, 0, True)


def test_2xx_to_connect_without_a_length_is_not_chunked():
    w = writer(method=b"CONNECT", keep_alive=False)
    assert w.respond(200, [], DS, b"", True) == (
        b"HTTP/1.1 200 OK\r\n" + DS + b"connection: close\r\n\r\n")


def test_other_answers_to_connect_are_framed_and_close():
    w = writer(method=b"CONNECT", keep_alive=False)
    data = w.respond(403, [(b"content-length", b"2")], DS, b"no", True)
    assert data == (b"HTTP/1.1 403 Forbidden\r\n" + DS + b"content-length: 2\r\n"
                    b"connection: close\r\n\r\nno")
    assert w.keep_alive is False


def test_body_beyond_content_length_is_dropped():
    w, _ = head(200, [(b"content-length", b"5")])
    assert w.body(b"hel") == b"hel"
    assert w.body(b"lo, world") == b"lo"
    assert w.body(b"more") == b""
    assert w.end() == b""
    assert w.keep_alive and w.bytes_sent == 5


def test_short_body_closes_the_connection():
    w, _ = head(200, [(b"content-length", b"5")])
    assert w.body(b"hel") == b"hel"
    assert w.keep_alive
    assert w.end() == b""
    assert not w.keep_alive and w.bytes_sent == 3


def test_content_length_zero():
    w, _ = head(200, [(b"content-length", b"0")])
    assert w.body(b"x") == b"" and w.end() == b"" and w.keep_alive


def test_repeated_identical_content_length():
    w, _ = head(200, [(b"content-length", b"2"), (b"Content-Length", b"02")])
    assert w.body(b"abc") == b"ab"


@pytest.mark.parametrize("value", [b"", b"-1", b"+1", b"1.0", b"0x1", b" 1", b"1 ", b"1,1",
                                   b"1" * 19, b"\xd9\xa1", b"abc"])
def test_invalid_content_length(value):
    with pytest.raises(InvalidResponse):
        head(200, [(b"content-length", value)])


def test_conflicting_content_lengths():
    with pytest.raises(InvalidResponse):
        head(200, [(b"content-length", b"1"), (b"content-length", b"2")])


def test_app_transfer_encoding_chunked_is_replaced_by_ours():
    w, data = head(200, [(b"Transfer-Encoding", b"Chunked")])
    assert data == b"HTTP/1.1 200 OK\r\n" + DS + b"transfer-encoding: chunked\r\n\r\n"
    assert w.body(b"a") == b"1\r\na\r\n"


def test_app_transfer_encoding_chunked_on_http10_is_close_delimited():
    w, data = head(200, [(b"transfer-encoding", b"chunked")], version="1.0", keep_alive=True)
    assert data == b"HTTP/1.1 200 OK\r\n" + DS + b"connection: close\r\n\r\n"
    assert w.body(b"a") == b"a" and not w.keep_alive


@pytest.mark.parametrize("value", [b"gzip", b"gzip, chunked", b"identity", b""])
def test_other_transfer_encodings_are_refused(value):
    with pytest.raises(InvalidResponse):
        head(200, [(b"transfer-encoding", value)])


def test_content_length_and_transfer_encoding_together_are_refused():
    with pytest.raises(InvalidResponse):
        head(200, [(b"content-length", b"1"), (b"transfer-encoding", b"chunked")])


# -- date and server --------------------------------------------------------------


def test_app_date_replaces_ours():
    _, data = head(200, [(b"Date", b"yesterday"), (b"content-length", b"0")])
    assert data == (b"HTTP/1.1 200 OK\r\nserver: selectserver\r\nDate: yesterday\r\n"
                    b"content-length: 0\r\n\r\n")


def test_app_server_replaces_ours():
    _, data = head(200, [(b"server", b"mine"), (b"content-length", b"0")])
    assert data == (b"HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                    b"server: mine\r\ncontent-length: 0\r\n\r\n")


def test_app_date_and_server_replace_both():
    _, data = head(200, [(b"server", b"s"), (b"date", b"d"), (b"content-length", b"0")])
    assert data == b"HTTP/1.1 200 OK\r\nserver: s\r\ndate: d\r\ncontent-length: 0\r\n\r\n"


def test_empty_date_server_block():
    w = writer()
    assert w.head(200, [(b"content-length", b"0")], b"") == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    w = writer()
    assert w.head(200, [(b"date", b"d"), (b"content-length", b"0")], b"") == (
        b"HTTP/1.1 200 OK\r\ndate: d\r\ncontent-length: 0\r\n\r\n")


# -- what the app may not send ---------------------------------------------------------


@pytest.mark.parametrize("value", [b"a\r\nx-injected: 1", b"a\nb", b"a\rb", b"a\x00b", b"\r\n",
                                   b"\n", b"a\r\n\r\nbody"])
def test_cr_lf_nul_in_values_are_refused(value):
    with pytest.raises(InvalidResponse) as info:
        head(200, [(b"content-length", b"0"), (b"x-bad", value)])
    assert "x-bad" in str(info.value)


@pytest.mark.parametrize("value", [b"a\r\nb", b"\x00"])
def test_cr_lf_nul_in_framing_values_are_refused(value):
    with pytest.raises(InvalidResponse):
        head(200, [(b"connection", value)])
    with pytest.raises(InvalidResponse):
        head(200, [(b"date", value)])


@pytest.mark.parametrize("name", [b"", b"x y", b"x:y", b"x\r\ny", b"x\n", b"x\x00", b"(x)",
                                  b"x\xe9", b" x", b"x ", b"x\t"])
def test_invalid_names_are_refused(name):
    with pytest.raises(InvalidResponse):
        head(200, [(name, b"v")])


@pytest.mark.parametrize("pair", [("content-type", "text/plain"), (b"x", "v"), ("x", b"v"),
                                  (b"x", 1), (b"x", None), (bytearray(b"x"), b"v"),
                                  (b"x",), (b"x", b"v", b"w"), b"xy"])
def test_non_bytes_headers_are_refused(pair):
    with pytest.raises(InvalidResponse):
        head(200, [pair])


def test_refused_head_leaves_writer_unstarted():
    w = writer()
    with pytest.raises(InvalidResponse):
        w.head(200, [(b"x", b"\n")], DS)
    assert not w.started and w.status == 0
    assert w.head(500, [(b"content-length", b"0")], DS).startswith(b"HTTP/1.1 500 ")


# -- order of calls -----------------------------------------------------------------------


def test_head_twice():
    w, _ = head(200, [])
    with pytest.raises(InvalidResponse):
        w.head(200, [], DS)


def test_body_before_head():
    with pytest.raises(InvalidResponse):
        writer().body(b"x")
    with pytest.raises(InvalidResponse):
        writer().end()


def test_body_and_end_after_end():
    w, _ = head(200, [])
    w.end()
    with pytest.raises(InvalidResponse):
        w.body(b"x")
    with pytest.raises(InvalidResponse):
        w.end()


@pytest.mark.parametrize("data", ["text", 1, None, [b"x"]])
def test_body_must_be_bytes(data):
    w, _ = head(200, [])
    with pytest.raises(InvalidResponse):
        w.body(data)


def test_body_accepts_bytearray_and_memoryview():
    w, _ = head(200, [])
    assert w.body(bytearray(b"ab")) == b"2\r\nab\r\n"
    assert w.body(memoryview(b"cd")) == b"2\r\ncd\r\n"


def test_new_writer_attributes():
    w = writer(keep_alive=False)
    assert (w.status, w.keep_alive, w.bytes_sent, w.started, w.finished) == (
        0, False, 0, False, False)
    assert w.request.method == b"GET"


# -- respond(): head, body and end in one call ------------------------------------------


def state(w):
    return (w.status, w.keep_alive, w.bytes_sent, w.started, w.finished,
            w._framing, w._remaining)


@pytest.mark.parametrize("status, headers, body, kwargs", [
    (200, [(b"content-type", b"text/plain"), (b"content-length", b"13")], b"Hello, world!", {}),
    (200, [(b"content-length", b"5")], b"hel", {}),                 # short: must close
    (200, [(b"content-length", b"2")], b"hello", {}),               # long: cut
    (200, [(b"content-length", b"0")], b"", {}),
    (200, [(b"content-length", b"3")], bytearray(b"abc"), {}),
    (200, [(b"content-length", b"3")], memoryview(b"abc"), {}),
    (200, [(b"content-type", b"text/plain")], b"chunked", {}),
    (200, [(b"content-type", b"text/plain")], b"", {}),
    (200, [], b"until close", {"version": "1.0", "keep_alive": True}),
    (200, [(b"content-length", b"5")], b"hello", {"method": b"HEAD"}),
    (304, [(b"content-length", b"5")], b"hello", {}),
    (204, [(b"content-length", b"5")], b"", {}),
    (200, [(b"content-length", b"4"), (b"connection", b"close")], b"abcd", {}),
])
@pytest.mark.parametrize("end", [True, False])
def test_respond_is_head_body_and_end(status, headers, body, kwargs, end):
    w = writer(**kwargs)
    expected = w.head(status, headers, DS) + (w.body(body) if body else b"")
    if end:
        expected += w.end()
    w2 = writer(**kwargs)
    assert w2.respond(status, headers, DS, body, end) == expected
    assert state(w2) == state(w)


def test_respond_refuses_what_head_and_body_refuse():
    w = writer()
    with pytest.raises(InvalidResponse):
        w.respond(200, [(b"x", b"a\r\nb")], DS, b"", True)
    assert not w.started
    w = writer()
    with pytest.raises(InvalidResponse):
        w.respond(200, [(b"content-length", b"1")], DS, "text", True)
    with pytest.raises(InvalidResponse):
        w.respond(200, [], DS, b"", True)   # already started


@pytest.mark.parametrize("value", [[104, 105], (104,), range(3)])
def test_header_values_that_only_look_like_bytes_are_refused(value):
    w = writer()
    with pytest.raises(InvalidResponse):
        w.head(200, [(b"x", value)], DS)
    with pytest.raises(InvalidResponse):
        w.head(200, [(b"content-length", value)], DS)
    assert not w.started


# -- file bodies ---------------------------------------------------------------------


def test_file_body_with_content_length():
    w, _ = head(200, [(b"content-length", b"10")])
    assert w.file_body(6) == 6
    assert w.file_body(6) == 4
    assert w.file_body(6) == 0
    assert w.bytes_sent == 10
    w.end()
    assert w.keep_alive


def test_file_body_refused_when_chunked():
    w, _ = head(200, [])
    with pytest.raises(InvalidResponse):
        w.file_body(5)


def test_file_body_without_body_and_close_delimited():
    w, _ = head(200, [(b"content-length", b"3")], method=b"HEAD")
    assert w.file_body(3) == 0
    w, _ = head(200, [], version="1.0")
    assert w.file_body(7) == 7


def test_file_body_before_head():
    with pytest.raises(InvalidResponse):
        writer().file_body(1)


# -- CONTINUE and error_response ------------------------------------------------------


def test_continue():
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("status", [400, 408, 413, 414, 417, 431, 500, 501, 503, 505])
def test_error_response(status):
    reason = grammar.REASON_PHRASES[status]
    body = b"%d %s\n" % (status, reason)
    assert error_response(status, DS) == (
        b"HTTP/1.1 %d %s\r\n" % (status, reason) + DS
        + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
          b"connection: close\r\n\r\n" % len(body) + body)


def test_error_response_with_detail():
    data = error_response(400, b"", "bare LF line ending \u2013 refused")
    head_part, _, body = data.partition(b"\r\n\r\n")
    assert body == "400 Bad Request\nbare LF line ending \u2013 refused\n".encode()
    assert b"content-length: %d\r\n" % len(body) in head_part


def test_error_response_unknown_status():
    assert error_response(599, b"").startswith(b"HTTP/1.1 599 \r\n")


def test_status_lines_are_precomputed():
    from selectserver.http11 import writer as writer_module
    assert writer_module._STATUS_LINES[200] == b"HTTP/1.1 200 OK\r\n"
    assert set(writer_module._STATUS_LINES) == set(grammar.REASON_PHRASES)


# -- remembered response shapes ---------------------------------------------------------
#
# respond() remembers what a tuple of (bytes, bytes) fields means (writer._SHAPES).
# Whatever it remembered, a response must come out as the full check makes it:
# the same bytes, the same writer state, the same error.

from selectserver.http11 import writer as writer_module  # noqa: E402

CT = (b"content-type", b"text/plain")

SHAPE_HEADERS = [
    [],
    [CT, (b"content-length", b"5")],
    [(b"Content-Length", b"5"), CT],
    [CT],
    [(b"content-length", b"5"), (b"content-length", b"5")],
    [(b"content-length", b"0")],
    [(b"content-length", b"5"), (b"connection", b"close")],
    [(b"Connection", b"Keep-Alive"), (b"content-length", b"5")],
    [(b"connection", b"keep-alive, close")],
    [(b"transfer-encoding", b"chunked"), CT],
    [CT, (b"Transfer-Encoding", b" Chunked ")],
    [(b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"content-length", b"5")],
    [(b"Server", b"mine")],
    [(b"connection", b"upgrade"), (b"upgrade", b"websocket")],
    [(b"x-long", b"v" * 300), CT],
    [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"vary", b"accept")],
    # wrong: each must raise, the second time as the first
    [(b"bad name", b"x")],
    [CT, (b"x", b"a\r\nb")],
    [(b"x", b"nul\x00")],
    [(b"connection", b"close\n")],
    [(b"content-length", b"abc")],
    [(b"content-length", b"-1")],
    [(b"content-length", b"5"), (b"content-length", b"6")],
    [(b"transfer-encoding", b"gzip")],
    [(b"transfer-encoding", b"chunked"), (b"content-length", b"5")],
    [(b"x", "text")],
    [(b"x",)],
    [(b"x", b"y", b"z")],
    [(b"", b"y")],
]

SHAPE_REQUESTS = [
    {},
    {"method": b"HEAD"},
    {"method": b"CONNECT", "keep_alive": False},
    {"version": "1.0"},
    {"version": "1.0", "keep_alive": True},
    {"keep_alive": False},
]


def outcome(kwargs, status, headers, date_server, body, end):
    """What respond() gives: the bytes and the writer's state, or the error."""
    w = writer(**kwargs)
    try:
        data = w.respond(status, headers, date_server, body, end)
    except InvalidResponse as exc:
        return ("raised", str(exc), state(w))
    return (data, state(w))


@pytest.mark.parametrize("headers", SHAPE_HEADERS, ids=repr)
@pytest.mark.parametrize("kwargs", SHAPE_REQUESTS, ids=repr)
def test_a_remembered_shape_answers_as_the_full_check(headers, kwargs):
    full = [list(field) for field in headers]   # lists: never remembered
    for status in (200, 204, 304, 101, 404, http.HTTPStatus.CREATED, 599):
        for date_server, body, end in ((DS, b"hello", True), (b"", b"", False)):
            args = (status, date_server, body, end)
            expected = outcome(kwargs, status, full, *args[1:])
            writer_module._SHAPES.clear()
            first = outcome(kwargs, status, list(headers), *args[1:])
            again = outcome(kwargs, status, list(headers), *args[1:])
            as_tuple = outcome(kwargs, status, tuple(headers), *args[1:])
            assert first == again == as_tuple == expected, args
            if expected[0] == "raised":
                assert not writer_module._SHAPES   # a wrong shape is never kept


def test_the_usual_shape_is_remembered_once():
    writer_module._SHAPES.clear()
    headers = [CT, (b"content-length", b"5")]
    first = writer().respond(200, headers, DS, b"hello", True)
    assert list(writer_module._SHAPES) == [tuple(headers)]
    assert writer().respond(200, list(headers), DS, b"hello", True) == first
    assert len(writer_module._SHAPES) == 1


class FieldName(bytes):
    pass


@pytest.mark.parametrize("headers", [
    [[b"content-length", b"5"]],                      # a list as a field
    [(b"content-length", bytearray(b"5"))],           # unhashable value
    [(b"x", memoryview(b"y"))],                       # bytes-like, not bytes
    [(FieldName(b"x"), b"y")],                          # a subclass of bytes
    [(b"x-big", b"v" * 1100)],                        # too long to keep
])
def test_what_is_not_remembered(headers):
    writer_module._SHAPES.clear()
    writer_module._CHECKED_LINES[(b"x", b"y")] = b"x: y\r\n"   # memoryview(b"y") == b"y"
    w = writer()
    w.respond(200, headers, DS, b"", False)
    assert not writer_module._SHAPES
    assert not w.finished


def test_headers_from_a_generator_are_read_once_and_not_remembered():
    writer_module._SHAPES.clear()
    data = writer().respond(200, (field for field in [CT, (b"content-length", b"2")]),
                            DS, b"hi", True)
    assert data == (b"HTTP/1.1 200 OK\r\n" + DS + b"content-type: text/plain\r\n"
                    b"content-length: 2\r\n\r\nhi")
    assert not writer_module._SHAPES


def test_shapes_stay_bounded():
    writer_module._SHAPES.clear()
    for length in range(writer_module._SHAPES_MAX * 2 + 3):
        writer().respond(200, [CT, (b"content-length", b"%d" % length)], DS, b"", True)
        assert len(writer_module._SHAPES) <= writer_module._SHAPES_MAX
