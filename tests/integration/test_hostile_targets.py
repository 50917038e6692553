"""Tunnels, request targets and Content-Length over real sockets, for ASGI
and WSGI: what the parser and writer decide must reach the application and
the wire as they decided it.

- CONNECT: the answer is the connection's last; a 2xx has no framing; the
  bytes after the request are never served as requests (RFC 9110 §9.3.6).
- Targets (RFC 9112 §3.2): an absolute-form authority is the app's host;
  authority-form only with CONNECT, asterisk-form only with OPTIONS,
  absolute-form only for http and https, no fragment.
- Content-Length: leading zeros are digits like others; equal repeated
  values reach the app as one field.
"""

import json
import os
import re
import threading

import pytest

from tests.integration.conftest import raw_exchange

STATUS_LINE = re.compile(rb"(?m)^HTTP/1\.1 (\d{3}) ")
CORPUS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "corpus")
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


class Recorder:
    """A catch-all app, ASGI and WSGI: answers every request with what it
    saw as JSON, and remembers it.  CONNECT to a "deny." host gets a 403."""

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()

    def _answer(self, seen):
        with self.lock:
            self.seen.append(seen)
        status = 403 if seen["method"] == "CONNECT" and seen["path"].startswith("deny.") else 200
        return status, json.dumps(seen).encode()

    async def asgi(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        status, answer = self._answer({
            "method": scope["method"], "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"), "headers": headers,
            "host": [v for n, v in headers if n == "host"], "body": body.decode("latin-1")})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})

    def wsgi(self, environ, start_response):
        body = environ["wsgi.input"].read()
        status, answer = self._answer({
            "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
            "query": environ["QUERY_STRING"], "host": [environ.get("HTTP_HOST")],
            "content_length": environ.get("CONTENT_LENGTH"), "body": body.decode("latin-1")})
        start_response("%d X" % status, [("Content-Length", str(len(answer)))])
        return [answer]


@pytest.fixture(params=["asgi", "wsgi"])
def server(request, serve):
    recorder = Recorder()
    app = recorder.asgi if request.param == "asgi" else recorder.wsgi
    started = serve(app, interface="asgi3" if request.param == "asgi" else "wsgi")
    started.recorder = recorder
    started.interface = request.param
    return started


def responses(reply):
    """The statuses of every response in ``reply``, in order."""
    return [int(status) for status in STATUS_LINE.findall(reply)]


# -- CONNECT: no HTTP after a tunnel ----------------------------------------------------


def test_connect_2xx_ends_the_connection_and_the_smuggled_request_is_never_served(server):
    reply = raw_exchange(server.address, b"CONNECT b.example:443 HTTP/1.1\r\n"
                         b"Host: b.example:443\r\n\r\n" + SMUGGLED)
    assert responses(reply) == [200], reply
    head = reply.partition(b"\r\n\r\n")[0].lower()
    # RFC 9110 §9.3.6: no framing fields in a 2xx to CONNECT, and no body.
    assert b"content-length" not in head and b"transfer-encoding" not in head
    assert reply.endswith(b"\r\n\r\n")
    assert [seen["path"] for seen in server.recorder.seen] == ["b.example:443"]


def test_connect_refused_is_framed_and_still_ends_the_connection(server):
    # A client that sent bytes right behind CONNECT meant them for the
    # tunnel; a refusal does not make them requests.
    reply = raw_exchange(server.address, b"CONNECT deny.example:443 HTTP/1.1\r\n"
                         b"Host: deny.example:443\r\n\r\n" + SMUGGLED)
    assert responses(reply) == [403], reply
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(body) in head.lower()
    assert b"connection: close" in head.lower()
    assert [seen["path"] for seen in server.recorder.seen] == ["deny.example:443"]


def test_connect_with_keep_alive_and_pipelined_requests(server):
    reply = raw_exchange(server.address, b"CONNECT b.example:443 HTTP/1.1\r\n"
                         b"Host: b.example:443\r\nConnection: keep-alive\r\n\r\n" + SMUGGLED * 3)
    assert responses(reply) == [200]
    assert len(server.recorder.seen) == 1


# -- request targets ----------------------------------------------------------------------


def test_absolute_form_authority_is_the_host_and_its_path_the_path(server):
    reply = raw_exchange(server.address, b"GET http://evil.example/admin?x=1 HTTP/1.1\r\n"
                         b"Host: good.example\r\nConnection: close\r\n\r\n")
    assert responses(reply) == [200], reply
    seen = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert (seen["path"], seen["query"], seen["host"]) == ("/admin", "x=1", ["evil.example"])


def test_absolute_form_without_path_and_http_1_0_without_host(server):
    reply = raw_exchange(server.address, b"GET HTTPS://evil.example:8443?q HTTP/1.0\r\n\r\n")
    seen = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert (seen["path"], seen["query"], seen["host"]) == ("/", "q", ["evil.example:8443"])


def test_asterisk_form_options_is_served(server):
    reply = raw_exchange(server.address, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n"
                         b"Connection: close\r\n\r\n")
    assert responses(reply) == [200]
    assert server.recorder.seen[0]["path"] == "*"


def reproducers():
    """The target and Content-Length cases of the corpus, fed as they are."""
    names = ("target_fragment", "target_fragment_absolute_form", "authority_form_get",
             "authority_form_options", "absolute_form_ftp", "absolute_form_urn",
             "absolute_form_userinfo", "absolute_form_empty_host",
             "absolute_form_without_slashes", "absolute_form_bad_host_field",
             "absolute_form_http11_without_host", "asterisk_form_get",
             "cl_zero_padded_too_large")
    for name in names:
        with open(os.path.join(CORPUS, "invalid", name + ".http"), "rb") as file:
            raw = file.read()
        with open(os.path.join(CORPUS, "invalid", name + ".json")) as file:
            status = json.load(file)["status"]
        yield pytest.param(raw, status, id=name)


@pytest.mark.parametrize("raw, status", list(reproducers()))
def test_refused_targets_never_reach_the_app(server, raw, status):
    reply = raw_exchange(server.address, raw)
    assert responses(reply) == [status], reply
    assert server.recorder.seen == []


# -- Content-Length -----------------------------------------------------------------------


def test_zero_padded_content_length_is_its_number(server):
    reply = raw_exchange(server.address, b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                         b"Content-Length: 00000000000000000005\r\n\r\nhello")
    assert responses(reply) == [200], reply
    assert server.recorder.seen[0]["body"] == "hello"


def test_equal_content_lengths_reach_the_app_as_one_field(server):
    reply = raw_exchange(server.address, b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                         b"Content-Length: 5\r\nContent-Length: 05, 5\r\n\r\nhello")
    assert responses(reply) == [200], reply
    seen = server.recorder.seen[0]
    assert seen["body"] == "hello"
    if server.interface == "asgi":
        assert [h for h in seen["headers"] if h[0] == "content-length"] == [
            ["content-length", "5"]]
    else:
        assert seen["content_length"] == "5"
