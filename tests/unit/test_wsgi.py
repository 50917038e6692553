"""The WSGI adapter without sockets or threads: environ, wsgi.input, the cycle.

The cycle runs on the test's thread against a fake connection whose loop
runs ``call_soon_threadsafe`` callbacks at once, so the app's side and the
loop's side interleave exactly as they are handed over.  The condition is
re-entrant here for the same reason: the fake loop feeds ``wsgi.input``
from inside a read.
"""

import io
import sys
import threading
import warnings
from wsgiref import validate

import pytest

from selectserver.config import Config
from selectserver.http11.events import END_OF_MESSAGE, Data, Request
from selectserver.wsgi import (
    ClientDisconnected, Environs, FileWrapper, LoopQueue, WSGICycle, WSGIInput, build_environ)
from selectserver.wsgi import script_name_of as _script_name
from selectserver.wsgi.cycle import _MOVES, TRANSITIONS, CycleEvent, CycleState, body_at_head
from tests.apps import wsgi_apps

BASE = {
    "SCRIPT_NAME": "",
    "wsgi.version": (1, 0),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
    "wsgi.input_terminated": True,
}


class FakeLoop:
    def __init__(self):
        self.closed = False
        self.errors = []

    def call_soon_threadsafe(self, callback, *args):
        if self.closed:
            raise RuntimeError("Event loop is closed")
        callback(*args)

    def call_exception_handler(self, context):
        self.errors.append(context)


class FakeServer:
    def __init__(self, config):
        self.config = config
        self.scheme = "http"
        self.read_high_bytes = config.read_buffer_high_bytes
        self.write_high_bytes = config.write_buffer_high_bytes
        self.on_response = None


class FakeConnection:
    """Records what the cycle asks of a connection."""

    def __init__(self, body_events=(), must_wait=False, **options):
        self.loop = FakeLoop()
        self.server = FakeServer(Config(**options))
        self.client = ("10.0.0.2", 50000)
        self.local = ("10.0.0.1", 8000)
        self.cycle = None
        self.calls = []
        self.body_events = list(body_events)
        self.must_wait = must_wait
        self.writer = None
        self.started_at = 0.0

    def receive_body(self):
        self.calls.append(("receive_body",))
        return self.body_events.pop(0) if self.body_events else None

    def respond(self, status, headers, body=b"", end=False):
        self.calls.append(("respond", status, list(headers), body, end))
        if end:
            self.cycle = None
        return self.must_wait

    def send_body(self, body, end=False):
        self.calls.append(("send_body", body, end))
        if end:
            self.cycle = None
        return self.must_wait

    def send_file(self, file, offset, count, on_done):
        self.calls.append(("send_file", file.fileno(), offset, count))
        on_done()

    def respond_error(self, status, detail=""):
        self.calls.append(("respond_error", status))
        self.cycle = None

    def refuse(self, retry_after_s):
        self.calls.append(("refuse", retry_after_s))
        self.cycle = None

    def abort(self):
        self.calls.append(("abort",))
        self.cycle = None


def make_request(method=b"GET", target=b"/", headers=(), version="1.1", **fields):
    return Request(method, target, version, list(headers), **fields)


def environ_for(request, conn=None, script_name=""):
    conn = conn or FakeConnection()
    base = dict(BASE, SCRIPT_NAME=script_name)
    return build_environ(conn, request, base, script_name)


def serve(app, request=None, conn=None):
    """Run ``app`` for ``request`` on a fake connection; return the connection."""
    conn = conn or FakeConnection()
    request = request or make_request()
    cycle = WSGICycle(conn, app, request, LoopQueue(conn.loop), environ_for(request, conn))
    conn.cycle = cycle
    cycle.run()
    return conn


# -- the queue to the loop ------------------------------------------------------------


class QueueingLoop(FakeLoop):
    """Keeps call_soon_threadsafe callbacks until ``run()``."""

    def __init__(self):
        super().__init__()
        self.ready = []

    def call_soon_threadsafe(self, callback, *args):
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.ready.append((callback, args))

    def run(self):
        ready, self.ready = self.ready, []
        for callback, args in ready:
            callback(*args)


def test_loop_queue_wakes_the_loop_once_per_batch():
    loop = QueueingLoop()
    to_loop = LoopQueue(loop)
    ran = []
    for number in range(3):
        to_loop.call(ran.append, number)
    assert len(loop.ready) == 1 and ran == []
    loop.run()
    assert ran == [0, 1, 2]
    to_loop.call(ran.append, 3)
    assert len(loop.ready) == 1
    loop.run()
    assert ran == [0, 1, 2, 3]


def test_loop_queue_keeps_a_callback_without_arguments_as_it_is():
    # The usual response's callback is queued as it is; one with arguments
    # is run with them, in order with the others.
    loop = QueueingLoop()
    to_loop = LoopQueue(loop)
    ran = []

    def alone():
        ran.append("alone")
    to_loop.call(alone)
    to_loop.call(ran.append, "with an argument")
    assert to_loop._pending[0] is alone
    loop.run()
    assert ran == ["alone", "with an argument"]


def test_loop_queue_goes_on_after_a_failing_callback():
    loop = QueueingLoop()
    to_loop = LoopQueue(loop)
    ran = []
    to_loop.call(lambda: 1 / 0)
    to_loop.call(ran.append, "after")
    loop.run()
    assert ran == ["after"]
    assert isinstance(loop.errors[0]["exception"], ZeroDivisionError)


def test_loop_queue_on_a_closed_loop_raises_every_time():
    loop = QueueingLoop()
    loop.closed = True
    to_loop = LoopQueue(loop)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            to_loop.call(print)


# -- the environ ---------------------------------------------------------------------


def test_environ_has_every_pep_3333_key_as_str():
    environ = environ_for(make_request(b"POST", b"/a/b?x=1&y=%20", [
        (b"host", b"example.com"), (b"content-type", b"text/plain"), (b"content-length", b"5"),
        (b"user-agent", b"t")], content_length=5))
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/a/b"
    assert environ["QUERY_STRING"] == "x=1&y=%20"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "5"
    assert environ["SERVER_NAME"] == "10.0.0.1" and environ["SERVER_PORT"] == "8000"
    assert environ["REMOTE_ADDR"] == "10.0.0.2" and environ["REMOTE_PORT"] == "50000"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["HTTP_HOST"] == "example.com" and environ["HTTP_USER_AGENT"] == "t"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["wsgi.url_scheme"] == "http"
    for key, value in environ.items():
        if "." not in key:
            assert type(value) is str, key


def test_environ_passes_wsgiref_validation():
    environ = environ_for(make_request(b"GET", b"/x", [(b"host", b"h")]))
    environ["wsgi.input"] = WSGIInput(None, False, 1024)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate.check_environ(environ)


def test_path_info_is_percent_decoded_then_latin_1():
    environ = environ_for(make_request(target=b"/caf%C3%A9/%2Fx?q=%C3%A9"))
    assert environ["PATH_INFO"] == "/caf\xc3\xa9//x"
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café//x"
    assert environ["QUERY_STRING"] == "q=%C3%A9"
    assert environ["RAW_URI"] == environ["REQUEST_URI"] == "/caf%C3%A9/%2Fx?q=%C3%A9"


def test_raw_non_ascii_bytes_in_the_path_are_latin_1():
    environ = environ_for(make_request(target="/café".encode("utf-8")))
    assert environ["PATH_INFO"] == "/caf\xc3\xa9"


@pytest.mark.parametrize("target, path_info", [
    (b"/app/x", "/x"), (b"/app", ""), (b"/app/", "/"), (b"/application", "/application"),
    (b"/other", "/other"),
])
def test_script_name_comes_from_root_path_and_leaves_path_info(target, path_info):
    script_name = _script_name("/app/")
    environ = environ_for(make_request(target=target), script_name=script_name)
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == path_info


def test_root_path_is_latin_1_text_of_its_utf_8():
    assert _script_name("/café") == "/caf\xc3\xa9"
    assert _script_name("") == ""


def test_headers_with_underscores_are_dropped():
    environ = environ_for(make_request(headers=[(b"x-user", b"alice"), (b"x_user", b"mallory")]))
    assert environ["HTTP_X_USER"] == "alice"


def test_a_head_seen_before_gives_the_same_environ_and_a_fresh_copy():
    from selectserver.wsgi import environ as environ_module
    base = dict(BASE, SCRIPT_NAME="")
    environs = Environs(base, "")
    head = [(b"host", b"example.com"), (b"accept", b"a/b"), (b"accept", b"c/d")]
    first_conn, other_conn = FakeConnection(), FakeConnection()
    other_conn.client = ("10.0.0.3", 50001)
    first = environs.build(first_conn, make_request(b"POST", b"/a?x=1", head, content_length=3))
    assert first == build_environ(first_conn, make_request(b"POST", b"/a?x=1", head,
                                                           content_length=3), base, "")
    first["app.state"] = "set by the app"    # apps add to their environ
    again = environs.build(other_conn, make_request(b"POST", b"/a?x=1", head, content_length=3))
    assert again is not first and "app.state" not in again
    assert again["REMOTE_PORT"] == "50001" and again["HTTP_ACCEPT"] == "a/b, c/d"
    assert again["CONTENT_LENGTH"] == "3" and again["QUERY_STRING"] == "x=1"
    # A large head is built each time, never remembered; the number remembered is bounded.
    environs.build(first_conn, make_request(headers=[(b"cookie", b"c" * 300)]))
    assert len(environs._heads) == 1
    for i in range(environ_module._HEADS_MAX + 1):
        environs.build(first_conn, make_request(target=b"/%d" % i))
    assert 0 < len(environs._heads) <= environ_module._HEADS_MAX


def test_a_heads_template_has_room_for_what_each_request_adds():
    base = dict(BASE, SCRIPT_NAME="")
    environs = Environs(base, "")
    conn = FakeConnection()
    request = make_request(headers=[(b"host", b"example.com"), (b"accept", b"*/*")])
    first = environs.build(conn, make_request(headers=request.headers))
    again = environs.build(conn, request)
    # The room left no key behind: the environ is what build_environ() makes.
    assert first == again == build_environ(conn, request, base, "")
    (template, _), = environs._heads.values()
    assert not set(template) & {"wsgi.input", "REMOTE_ADDR", "SERVER_NAME"}
    if sys.implementation.name == "cpython":
        # The copy kept the template's table: adding to it made no new one.
        again["wsgi.input"] = None
        assert sys.getsizeof(again) == sys.getsizeof(template)


def test_each_connection_keeps_its_own_addresses_request_after_request():
    from selectserver.wsgi import environ as environ_module
    environs = Environs(dict(BASE, SCRIPT_NAME=""), "")
    plain, other, tls, unix = (FakeConnection() for _ in range(4))
    other.client = ("10.0.0.3", 50001)
    tls.server.scheme = "https"
    tls.local = ("10.0.0.1", 8443)
    unix.local = unix.client = None
    for _ in range(2):   # the second time round, every connection is one seen before
        for conn, expected in ((plain, ("http", "10.0.0.1", "8000", "10.0.0.2", "50000")),
                               (other, ("http", "10.0.0.1", "8000", "10.0.0.3", "50001")),
                               (tls, ("https", "10.0.0.1", "8443", "10.0.0.2", "50000"))):
            environ = environs.build(conn, make_request())
            assert tuple(environ[key] for key in environ_module._CONNECTION_KEYS) == expected
        # A Unix socket's server comes from each request's Host, never remembered.
        for host in (b"a.example:81", b"b.example"):
            environ = environs.build(unix, make_request(headers=[(b"host", host)]))
            assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (
                ("a.example", "81") if host == b"a.example:81" else ("b.example", "80"))
            assert "REMOTE_ADDR" not in environ
    for port in range(environ_module._CONNECTIONS_MAX + 1):
        conn = FakeConnection()
        conn.client = ("10.0.0.4", port)
        assert environs.build(conn, make_request())["REMOTE_PORT"] == str(port)
        assert len(environ_module._CONNECTIONS) <= environ_module._CONNECTIONS_MAX


def test_proxy_fields_count_from_a_trusted_client_whether_the_head_is_new_or_seen_before():
    from selectserver.proxy import TrustedProxies
    environs = Environs(dict(BASE, SCRIPT_NAME=""), "", TrustedProxies("10.0.0.2"))
    trusted, untrusted = FakeConnection(), FakeConnection()
    untrusted.client = ("10.0.0.9", 50009)
    forwarded = [(b"host", b"example.com"), (b"x-forwarded-for", b"192.0.2.7"),
                 (b"x-forwarded-proto", b"https")]
    for _ in range(2):   # the second time round, the head is one seen before
        environ = environs.build(trusted, make_request(headers=forwarded))
        assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("192.0.2.7", "https")
        environ = environs.build(untrusted, make_request(headers=forwarded))
        assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("10.0.0.9", "http")
        environ = environs.build(trusted, make_request(headers=[(b"host", b"example.com")]))
        assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("10.0.0.2", "http")
    # Without trusted proxies (--proxy-headers off), the fields are only HTTP_ keys.
    environ = Environs(dict(BASE, SCRIPT_NAME=""), "").build(trusted, make_request(headers=forwarded))
    assert environ["REMOTE_ADDR"] == "10.0.0.2" and environ["HTTP_X_FORWARDED_FOR"] == "192.0.2.7"


def test_repeated_headers_are_joined():
    environ = environ_for(make_request(headers=[
        (b"accept", b"a/b"), (b"x-forwarded-for", b"1.1.1.1"), (b"accept", b"c/d"),
        (b"cookie", b"a=1"), (b"cookie", b"b=2")]))
    assert environ["HTTP_ACCEPT"] == "a/b, c/d"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"


def test_header_values_are_latin_1():
    environ = environ_for(make_request(headers=[(b"x-name", "Zoë".encode("utf-8"))]))
    assert environ["HTTP_X_NAME"] == "Zo\xc3\xab"


def test_chunked_request_has_no_content_length():
    environ = environ_for(make_request(b"POST", headers=[(b"transfer-encoding", b"chunked")],
                                       chunked=True))
    assert "CONTENT_LENGTH" not in environ
    assert environ["wsgi.input_terminated"] is True


def test_http_1_0_and_absolute_form():
    environ = environ_for(make_request(target=b"http://example.com/p?q", version="1.0"))
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["PATH_INFO"] == "/p" and environ["QUERY_STRING"] == "q"


def test_unix_socket_takes_server_name_from_host():
    conn = FakeConnection()
    conn.local = conn.client = None
    environ = environ_for(make_request(headers=[(b"host", b"example.com:8080")]), conn)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "8080")
    assert "REMOTE_ADDR" not in environ
    environ = environ_for(make_request(headers=[(b"host", b"[::1]")]), conn)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("[::1]", "80")
    environ = environ_for(make_request(), conn)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")


# -- wsgi.input -------------------------------------------------------------------------


class FakeBodySource:
    """Stands in for the cycle: hands out queued pieces when asked for more."""

    def __init__(self, pieces, high_bytes=1024):
        self.pieces = list(pieces)
        self.requests = 0
        self.lock = threading.Lock()
        self.input = WSGIInput(self, True, high_bytes)

    def notify(self):
        pass

    def wait(self):
        raise AssertionError("the read would wait forever")

    def request_body(self):
        self.requests += 1
        while self.pieces:
            piece = self.pieces.pop(0)
            if piece is None:
                self.input.feed_eof()
                return
            if self.input.feed(piece):
                return


def body_of(*pieces, high_bytes=1024):
    return FakeBodySource(list(pieces) + [None], high_bytes).input


def test_read_all_and_read_n_across_pieces():
    body = body_of(b"hel", b"lo wo", b"rld")
    assert body.read(4) == b"hell"
    assert body.read(0) == b""
    assert body.read(100) == b"o world"
    assert body.read() == b""
    body = body_of(b"a", b"b", b"c")
    assert body.read() == b"abc"
    assert body_of(b"xy").read(None) == b"xy"


def test_readline_readlines_and_iteration():
    body = body_of(b"one\ntw", b"o\n", b"three")
    assert body.readline() == b"one\n"
    assert body.readline() == b"two\n"
    assert body.readline() == b"three"
    assert body.readline() == b""
    assert body_of(b"abcdef\n").readline(4) == b"abcd"
    assert body_of(b"a\nb\nc\n").readlines() == [b"a\n", b"b\n", b"c\n"]
    assert body_of(b"a\nb\nc\n").readlines(2) == [b"a\n"]   # as io.BytesIO
    assert body_of(b"a\nb\nc\n").readlines(3) == [b"a\n", b"b\n"]
    assert list(body_of(b"x\n", b"y\nz")) == [b"x\n", b"y\n", b"z"]


def test_the_first_read_asks_the_loop_for_the_body():
    source = FakeBodySource([b"data", None])
    assert source.requests == 0
    assert source.input.read() == b"data"
    assert source.requests == 1


def test_a_request_without_body_never_asks():
    body = WSGIInput(None, False, 1024)
    assert body.read() == b"" and body.readline() == b"" and list(body) == []


def test_requests_without_body_share_an_input_a_disconnect_cannot_spoil():
    conn = FakeConnection()
    first = WSGICycle(conn, hello, make_request(), LoopQueue(conn.loop), {})
    second = WSGICycle(conn, hello, make_request(), LoopQueue(conn.loop), {})
    assert first.input is second.input
    first.on_disconnect()
    assert second.input.read() == b"" and second.input.readline() == b""
    with_body = WSGICycle(conn, hello, make_request(b"POST", content_length=1),
                          LoopQueue(conn.loop), {})
    assert with_body.input is not first.input


def test_a_full_buffer_pauses_the_loop_until_the_app_reads():
    source = FakeBodySource([b"x" * 600, b"y" * 600, b"z" * 600, None], high_bytes=1000)
    body = source.input
    assert body.read(1) == b"x"
    assert source.requests == 1 and source.pieces == [b"z" * 600, None]   # paused at 1200 bytes
    assert body.read(500) == b"x" * 500
    assert source.requests == 1   # 699 left: above the resume mark (500)
    assert body.read(200) == b"x" * 99 + b"y" * 101
    assert source.requests == 2   # below it: the loop was asked to go on
    assert body.read() == b"y" * 499 + b"z" * 600


def test_read_n_larger_than_the_buffer_completes():
    source = FakeBodySource([b"a" * 700, b"b" * 700, b"c" * 700, None], high_bytes=1000)
    assert source.input.read(2000) == b"a" * 700 + b"b" * 700 + b"c" * 600


def test_a_disconnect_raises_after_the_buffered_bytes():
    body = FakeBodySource([]).input
    body.feed(b"partial")
    body.fail(ClientDisconnected("client disconnected"))
    assert body.read(3) == b"par"
    with pytest.raises(ClientDisconnected):
        body.read()
    with pytest.raises(ClientDisconnected):
        body.readline()


# -- the cycle -------------------------------------------------------------------------


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, ", b"world!"]


def test_a_list_is_one_response_with_a_content_length():
    conn = serve(hello)
    assert conn.calls == [("respond", 200, [(b"Content-Type", b"text/plain"),
                                            (b"content-length", b"13")], b"Hello, world!", True)]


def test_head_and_204_get_no_content_length_of_ours():
    conn = serve(hello, make_request(b"HEAD"))
    assert conn.calls[0][2] == [(b"Content-Type", b"text/plain")]

    def no_content(environ, start_response):
        start_response("204 No Content", [])
        return []

    assert serve(no_content).calls == [("respond", 204, [], b"", True)]


def test_the_apps_content_length_is_kept():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]

    assert serve(app).calls == [("respond", 200, [(b"Content-Length", b"5")], b"hello", True)]


def test_a_head_seen_before_never_lends_its_fields_to_another():
    def app_with(status, headers, body):
        def app(environ, start_response):
            start_response(status, list(headers))
            return [body]
        return app

    plain = app_with("200 OK", [("Content-Type", "text/plain")], b"abc")
    html = app_with("200 OK", [("Content-Type", "text/html")], b"hello")
    framed = app_with("404 Not Found", [("Content-Length", "2")], b"no")
    for _ in range(2):   # the second time round, every head is one seen before
        assert serve(plain).calls == [("respond", 200, [(b"Content-Type", b"text/plain"),
                                                        (b"content-length", b"3")], b"abc", True)]
        assert serve(html).calls == [("respond", 200, [(b"Content-Type", b"text/html"),
                                                       (b"content-length", b"5")], b"hello", True)]
        assert serve(framed).calls == [("respond", 404, [(b"Content-Length", b"2")], b"no", True)]


def test_a_header_list_the_app_changes_after_start_response_is_not_read_again():
    headers = [("Content-Type", "text/plain")]

    def app(environ, start_response):
        start_response("200 OK", headers)
        headers.append(("X-Late", "1"))   # too late for this response
        return [b"a"]

    first = serve(app).calls
    second = serve(app).calls
    assert first == [("respond", 200, [(b"Content-Type", b"text/plain"),
                                       (b"content-length", b"1")], b"a", True)]
    assert second == [("respond", 200, [(b"Content-Type", b"text/plain"), (b"X-Late", b"1"),
                                        (b"content-length", b"1")], b"a", True)]


def test_heads_remembered_stay_few_and_small():
    from selectserver.wsgi import cycle as cycle_module

    def app(environ, start_response):
        start_response("200 OK", [("X-N", environ["QUERY_STRING"]), ["X-List", "a list"]])
        return [b""]

    # A field given as a list is taken, as before, but such a head is not kept.
    assert serve(app, make_request(target=b"/?1")).calls[0][2][:2] == [
        (b"X-N", b"1"), (b"X-List", b"a list")]
    assert not any(("X-N", "1") in fields for _, fields in cycle_module._HEADS)

    def many(environ, start_response):
        start_response("200 OK", [("X-N", environ["QUERY_STRING"])])
        return [b""]

    for n in range(cycle_module._HEADS_MAX * 2 + 1):
        serve(many, make_request(target=b"/?%d" % n))
        assert len(cycle_module._HEADS) <= cycle_module._HEADS_MAX
    long_value = "x" * (cycle_module._CACHED_VALUE_MAX_CHARS + 1)
    serve(many, make_request(target=b"/?" + long_value.encode()))
    assert not any(("X-N", long_value) in fields for _, fields in cycle_module._HEADS)


def test_a_generator_is_streamed_and_closed():
    closed = []

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            yield b"one"
            yield b""
            yield b"two"
        finally:
            closed.append(True)

    conn = serve(app)
    assert conn.calls == [("respond", 200, [], b"one", False), ("send_body", b"two", False),
                          ("send_body", b"", True)]
    assert closed == [True]


def test_an_empty_generator_is_an_empty_body_with_length():
    def app(environ, start_response):
        start_response("200 OK", [])
        return iter([b""])

    assert serve(app).calls == [("respond", 200, [(b"content-length", b"0")], b"", True)]


def test_start_response_inside_the_first_iteration():
    def app(environ, start_response):
        def body():
            start_response("201 Created", [("X-A", "1")])
            yield b"made"
        return body()

    assert serve(app).calls[0] == ("respond", 201, [(b"X-A", b"1")], b"made", False)


def test_write_then_return():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"a")
        write(bytearray(b"b"))
        return [b"c"]

    assert serve(app).calls == [("respond", 200, [], b"a", False), ("send_body", b"b", False),
                                ("send_body", b"c", False), ("send_body", b"", True)]


def test_content_length_stops_the_iteration():
    pulled = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "4")])
        for piece in (b"ab", b"cdef", b"never"):
            pulled.append(piece)
            yield piece

    conn = serve(app)
    assert pulled == [b"ab", b"cdef"]
    assert conn.calls == [("respond", 200, [(b"Content-Length", b"4")], b"ab", False),
                          ("send_body", b"cd", False), ("send_body", b"", True)]


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_error_before_the_head_is_a_500(caplog):
    def app(environ, start_response):
        raise ValueError("boom")

    assert serve(app).calls == [("respond_error", 500)]
    assert "boom" in caplog.text and "GET /" in caplog.text


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_error_after_the_head_aborts_the_connection_and_closes():
    closed = []

    class Body:
        def __iter__(self):
            yield b"start"
            raise ValueError("mid-body")

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    conn = serve(app)
    assert conn.calls == [("respond", 200, [], b"start", False), ("abort",)]
    assert closed == [True]


def test_exc_info_before_the_head_replaces_it():
    assert serve(wsgi_apps.replaces_head_with_exc_info).calls == [
        ("respond", 503, [(b"Content-Type", b"text/plain"), (b"content-length", b"24")],
         b"the app's own error page", True)]


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_exc_info_after_the_head_re_raises(caplog):
    conn = serve(wsgi_apps.exc_info_after_head)
    assert conn.calls == [("respond", 200, [(b"Content-Type", b"text/plain")], b"already sent", False),
                          ("abort",)]
    assert "too late" in caplog.text   # the app's own exception, re-raised


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_start_response_twice_without_exc_info_is_an_error():
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return []

    assert serve(app).calls == [("respond_error", 500)]


@pytest.mark.parametrize("status, headers", [
    ("abc", []), ("20 OK", []), ("200OK", []), (200, []), ("200 OK\r\nX: y", []),
    ("200 OK", [("X-A", "a\r\nSet-Cookie: evil")]), ("200 OK", [("X-A", "a\nb")]),
    ("200 OK", [("X-A", "a\0b")]), ("200 OK", [("X\r\nA", "a")]),
    ("200 OK", [("X-A", b"bytes")]), ("200 OK", [("X-A", "snowman \u2603")]),
])
@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_invalid_status_or_headers_are_a_500_and_never_sent(status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"x"]

    assert serve(app).calls == [("respond_error", 500)]


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_returning_without_start_response_is_a_500():
    assert serve(lambda environ, start_response: [b"x"]).calls == [("respond_error", 500)]
    assert serve(lambda environ, start_response: iter([b"x"])).calls == [("respond_error", 500)]


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_a_file_returned_without_start_response_is_a_500_and_closed(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    files = []

    def app(environ, start_response):
        files.append(open(path, "rb"))
        return environ["wsgi.file_wrapper"](files[-1])

    assert serve(app).calls == [("respond_error", 500)]
    assert files[0].closed


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_an_asgi_app_is_named_in_the_error(caplog):
    async def coroutine():
        pass

    def app(environ, start_response):
        return coroutine()

    assert serve(app).calls == [("respond_error", 500)]
    assert "ASGI" in caplog.text


def test_a_disconnect_stops_the_iteration_and_closes():
    closed = []
    conn = FakeConnection()

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            yield b"one"
            conn.cycle.on_disconnect()   # the loop learns the client left
            yield b"two"
            yield b"three"
        finally:
            closed.append(True)

    serve(app, conn=conn)
    assert conn.calls == [("respond", 200, [], b"one", False)]
    assert closed == [True]


def test_write_after_a_disconnect_raises():
    conn = FakeConnection()
    errors = []

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"one")
        conn.cycle.on_disconnect()
        try:
            write(b"two")
        except OSError as exc:
            errors.append(exc)
        return []

    serve(app, conn=conn)
    assert isinstance(errors[0], ClientDisconnected)


def test_an_app_is_not_called_for_a_client_already_gone():
    called = []
    conn = FakeConnection()
    request = make_request()
    cycle = WSGICycle(conn, lambda e, s: called.append(1), request, LoopQueue(conn.loop),
                      environ_for(request, conn))
    conn.cycle = cycle
    cycle.on_disconnect()
    cycle.run()
    assert called == [] and conn.calls == []


def test_a_closed_loop_ends_the_app_quietly():
    conn = FakeConnection()
    conn.loop.closed = True
    closed = []

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            yield b"x"
        finally:
            closed.append(True)

    serve(app, conn=conn)
    assert closed == [True] and conn.calls == []


def test_the_body_reaches_the_app_through_the_loop():
    conn = FakeConnection([Data(b"hello "), Data(b"world"), END_OF_MESSAGE])

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    request = make_request(b"POST", content_length=11)
    conn = serve(app, request, conn)
    assert conn.calls == [("receive_body",)] * 3 + [
        ("respond", 200, [(b"content-length", b"11")], b"hello world", True)]


def test_reading_after_the_response_ended_raises():
    conn = FakeConnection([Data(b"a")])
    seen = []

    class Body(list):
        def close(self):
            try:
                environ_holder[0]["wsgi.input"].read()
            except OSError as exc:
                seen.append(exc)

    environ_holder = []

    def app(environ, start_response):
        environ_holder.append(environ)
        start_response("200 OK", [])
        return Body([b"done"])

    serve(app, make_request(b"POST", content_length=5), conn)
    assert len(seen) == 1


def test_a_file_wrapper_with_a_descriptor_goes_to_send_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789")
    closed = []

    class TrackedFile(io.FileIO):
        def close(self):
            closed.append(True)
            super().close()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        file = TrackedFile(str(path), "rb")
        file.seek(3)
        return environ["wsgi.file_wrapper"](file, 4)

    conn = serve(app)
    assert conn.calls[0] == ("respond", 200, [(b"Content-Type", b"application/octet-stream"),
                                              (b"content-length", b"7")], b"", False)
    assert conn.calls[1][0] == "send_file" and conn.calls[1][2:] == (3, 7)
    assert conn.calls[2] == ("send_body", b"", True)
    assert closed == [True]


def test_a_file_wrapper_without_a_descriptor_is_iterated():
    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"abcdefg"), 3)

    assert serve(app).calls == [("respond", 200, [], b"abc", False), ("send_body", b"def", False),
                                ("send_body", b"g", False), ("send_body", b"", True)]


def test_a_chunked_file_response_is_iterated(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"head:")
        return FileWrapper(open(str(path), "rb"))

    assert [call[0] for call in serve(app).calls] == ["respond", "send_body", "send_body"]


# -- telling WSGI from ASGI --------------------------------------------------------------


def test_interface_detection():
    from selectserver.worker import AppLoadError, detect_interface

    def wsgi_app(environ, start_response):
        pass

    def wsgi_with_option(environ, start_response, debug=False):
        pass

    def sync_asgi(scope, receive, send):
        pass

    async def asgi_app(scope, receive, send):
        pass

    class WSGIObject:
        def __call__(self, environ, start_response):
            pass

    assert detect_interface(wsgi_app) == "wsgi"
    assert detect_interface(wsgi_with_option) == "wsgi"
    assert detect_interface(WSGIObject()) == "wsgi"
    assert detect_interface(validate.validator(wsgi_app)) == "wsgi"   # takes *args
    assert detect_interface(sync_asgi) == "asgi3"
    assert detect_interface(asgi_app) == "asgi3"
    with pytest.raises(AppLoadError, match="--interface"):
        detect_interface(lambda only: None)


# -- a body that arrived with its head ------------------------------------------------


# -- the body collected before the app runs (buffered) -------------------------------------


def buffered_cycle(app, events, spool_bytes=None, **fields):
    conn = FakeConnection(body_events=events)
    request = make_request(b"POST", headers=[(b"content-length", b"4")], content_length=4,
                           **fields)
    conn.request = request
    cycle = WSGICycle(conn, app, request, LoopQueue(conn.loop), environ_for(request, conn),
                      buffered=True)
    if spool_bytes is not None:
        cycle.spool_bytes = spool_bytes
    conn.cycle = cycle
    queued = []
    cycle.on_body = queued.append
    return conn, cycle, queued


def echo_read(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [])
    return [body]


def test_a_buffered_body_is_in_wsgi_input_before_the_app_runs():
    reads = []

    def app(environ, start_response):
        # What the app saw, checked by the test: the server would only log
        # an assertion failing in here.
        before = len(conn.calls)
        reads.append(environ["wsgi.input"].read())
        reads.append(conn.calls[before:])
        start_response("200 OK", [("Content-Length", "0")])
        return []

    conn, cycle, queued = buffered_cycle(app, [Data(b"ab"), Data(b"cd"), END_OF_MESSAGE])
    assert cycle.state is CycleState.RECEIVING
    cycle.receive_on_loop()
    assert conn.calls == [("receive_body",)] * 3
    assert queued == [cycle] and cycle.state is CycleState.QUEUED
    cycle.run()
    # The read asked the loop for nothing: no round trip.
    assert reads == [b"abcd", []]
    assert conn.calls[-1] == ("respond", 200, [(b"Content-Length", b"0")], b"", True)


def test_a_body_still_arriving_holds_no_thread_until_it_ends():
    conn, cycle, queued = buffered_cycle(echo_read, [Data(b"ab")], expect_continue=True)
    cycle.receive_on_loop()
    assert queued == [] and cycle.state is CycleState.RECEIVING
    conn.body_events = [Data(b"cd"), END_OF_MESSAGE]
    cycle.on_data_received()
    assert queued == [cycle]
    cycle.run()
    assert conn.calls[-1] == ("respond", 200, [(b"content-length", b"4")], b"abcd", True)


def whole_body_from(conn, body):
    """``conn.receive_whole_body()`` hands out ``body`` (None: not all here)."""
    def receive_whole_body():
        conn.calls.append(("receive_whole_body",))
        return body
    conn.receive_whole_body = receive_whole_body


def test_a_body_that_came_with_its_head_is_read_as_plain_bytes():
    # body_at_head: taken before the cycle exists, no RECEIVING step.
    conn = FakeConnection()
    whole_body_from(conn, b"abcd")
    request = make_request(b"POST", headers=[(b"content-length", b"4")], content_length=4)
    body = body_at_head(conn, request, 1024)
    assert body == b"abcd" and conn.calls == [("receive_whole_body",)]
    cycle = WSGICycle(conn, echo_read, request, LoopQueue(conn.loop), environ_for(request, conn),
                      True, body)
    assert cycle.state is CycleState.QUEUED and cycle.environ["wsgi.input"].__class__ is io.BytesIO
    conn.cycle = cycle
    cycle.run()
    assert conn.calls[-1] == ("respond", 200, [(b"content-length", b"4")], b"abcd", True)
    cycle.input.fail(ClientDisconnected("late"))   # nothing can fail any more
    assert cycle.input.read() == b""


@pytest.mark.parametrize("length, chunked, limit, asked", [
    (4, False, 1024, True),    # the body is still arriving: the connection says None
    (4, False, 3, False),      # larger than the limit: it may go to a file
    (None, True, 1024, False), # chunked: RECEIVING parses it
])
def test_a_body_not_all_here_takes_the_receiving_way(length, chunked, limit, asked):
    conn = FakeConnection()
    whole_body_from(conn, None)
    request = make_request(b"POST", content_length=length, chunked=chunked)
    assert body_at_head(conn, request, limit) is None
    assert conn.calls == ([("receive_whole_body",)] if asked else [])


def test_a_large_buffered_body_goes_to_a_temporary_file():
    pieces = [b"line %d\n" % n for n in range(100)]
    lines = []

    def app(environ, start_response):
        body = environ["wsgi.input"]
        lines.append(body.readline())
        lines.append(body.read(7))
        lines.extend(body)
        start_response("204 No Content", [])
        return []

    conn, cycle, queued = buffered_cycle(app, [Data(p) for p in pieces] + [END_OF_MESSAGE],
                                         spool_bytes=64)
    cycle.receive_on_loop()
    assert cycle.input._file is not None and cycle.input.buffered_bytes == 0
    cycle.run()
    assert b"".join(lines) == b"".join(pieces)
    assert lines[:2] == [b"line 0\n", b"line 1\n"]
    assert cycle.input._file.closed   # dropped with the request


def test_a_client_gone_while_its_body_arrives_never_reaches_the_pool():
    logged = []
    conn, cycle, queued = buffered_cycle(echo_read, [Data(b"a")])
    conn.server.on_response = lambda *args: logged.append(args)
    conn.writer = FakeWriter()
    cycle.receive_on_loop()
    cycle.input.spill(io.BytesIO())
    cycle.on_disconnect()
    assert cycle.state is CycleState.GONE and queued == []
    assert cycle.input._file.closed
    assert logged == []   # nothing was answered: no access line of ours
    cycle.run()               # had it been queued: the app is not called
    assert conn.calls == [("receive_body",), ("receive_body",)]


class FakeWriter:
    started = False
    finished = False
    status = 0
    bytes_sent = 0


def test_a_response_cut_short_has_its_access_line():
    logged = []
    conn = FakeConnection()
    conn.server.on_response = lambda *args: logged.append(args)
    conn.writer = FakeWriter()
    conn.writer.started = True
    conn.request = make_request()
    cycle = WSGICycle(conn, hello, conn.request, LoopQueue(conn.loop), {})
    cycle.state = CycleState.STREAMING
    conn.cycle = cycle
    cycle.on_disconnect()
    assert len(logged) == 1 and logged[0][2] is conn.writer


def test_a_full_pool_refuses_with_503_and_retry_after():
    conn, cycle, queued = buffered_cycle(echo_read, [Data(b"abcd"), END_OF_MESSAGE])
    cycle.on_body = lambda cycle: cycle.refuse_on_loop(1)
    cycle.receive_on_loop()
    assert cycle.state is CycleState.DONE
    assert conn.calls[-1] == ("refuse", 1) and conn.cycle is None


# -- the cycle's state table ---------------------------------------------------------------


class TableCycle(WSGICycle):
    """A cycle put in any state, to apply one event to it."""

    def __init__(self, state):
        conn = FakeConnection()
        super().__init__(conn, hello, make_request(), LoopQueue(conn.loop), {})
        self.state = state


@pytest.mark.parametrize("state, event", sorted(TRANSITIONS, key=lambda k: (k[0].name, k[1].name)))
def test_every_allowed_move_of_the_cycle(state, event):
    cycle = TableCycle(state)
    assert cycle._advance(event) is TRANSITIONS[state, event]
    assert cycle.state is TRANSITIONS[state, event]


@pytest.mark.parametrize("state, event", [
    (CycleState.QUEUED, CycleEvent.HEAD),          # a head before a thread took it
    (CycleState.DONE, CycleEvent.ENDED),           # a second end
    (CycleState.RECEIVING, CycleEvent.STARTED),    # a thread before the body
])
def test_a_forbidden_move_raises_and_changes_nothing(state, event):
    cycle = TableCycle(state)
    with pytest.raises(RuntimeError, match="no move"):
        cycle._advance(event)
    assert cycle.state is state


def test_the_moves_by_state_are_the_table_itself():
    # _advance() looks moves up by state, then event: the same table.
    assert {(state, event): new for state, moves in _MOVES.items()
            for event, new in moves.items()} == TRANSITIONS


def test_every_state_but_gone_is_left_when_the_client_leaves():
    for state in CycleState:
        assert TRANSITIONS[state, CycleEvent.DISCONNECTED] is CycleState.GONE


def test_an_app_that_fails_because_the_client_left_is_not_an_error(caplog):
    # A malformed chunk: the connection answers 400 and tells the cycle,
    # while the app's thread waits in read().  The app's own exception,
    # raised from ours, is the client's doing: debug, not ERROR.
    conn = FakeConnection([Data(b"a")])
    real_receive = conn.receive_body

    def receive_body():
        event = real_receive()
        if event is None:
            conn.cycle.on_disconnect()
        return event

    conn.receive_body = receive_body

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            raise ValueError("upload failed") from exc
        start_response("200 OK", [])
        return []

    caplog.set_level("DEBUG", logger="selectserver.error")
    serve(app, make_request(b"POST", headers=[(b"transfer-encoding", b"chunked")], chunked=True),
          conn)
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
    assert any("client gone" in r.getMessage() for r in caplog.records)
    assert not any(call[0] in ("respond", "respond_error", "abort") for call in conn.calls)


def test_an_iterable_is_closed_at_the_next_piece_after_the_client_left():
    conn = FakeConnection()
    events = []

    def app(environ, start_response):
        start_response("200 OK", [])

        def pieces():
            try:
                yield b"first"
                conn.cycle.on_disconnect() if conn.cycle else None
                events.append("left")
                yield b"second"
                events.append("never")
                yield b"third"
            finally:
                events.append("closed")
        return pieces()

    cycle_conn = serve(app, conn=conn)
    assert events == ["left", "closed"]
    assert [c[0] for c in cycle_conn.calls] == ["respond"]
