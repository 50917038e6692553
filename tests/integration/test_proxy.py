"""Proxy headers over real connections, for ASGI and WSGI alike."""

from __future__ import annotations

import json

import pytest

from .conftest import raw_exchange


async def asgi_echo(scope, receive, send):
    if scope["type"] != "http":
        return
    host = dict(scope["headers"]).get(b"host", b"").decode()
    body = json.dumps({"client": list(scope["client"]) if scope["client"] else None,
                       "scheme": scope["scheme"], "host": host}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def wsgi_echo(environ, start_response):
    body = json.dumps({"client": [environ["REMOTE_ADDR"], int(environ["REMOTE_PORT"])],
                       "scheme": environ["wsgi.url_scheme"], "host": environ.get("HTTP_HOST")}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


APPS = {"asgi": asgi_echo, "wsgi": wsgi_echo}


def ask(server, *header_lines):
    head = b"GET / HTTP/1.1\r\nHost: internal:8000\r\nConnection: close\r\n"
    head += b"".join(line + b"\r\n" for line in header_lines) + b"\r\n"
    answer = raw_exchange(server.address, head)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.fixture(params=sorted(APPS))
def start(request, serve):
    return lambda **options: serve(APPS[request.param], **options)


def test_trusted_peer_x_forwarded(start):
    server = start()
    seen = ask(server, b"X-Forwarded-For: 203.0.113.7, 127.0.0.1", b"X-Forwarded-Proto: https",
               b"X-Forwarded-Host: shop.example")
    assert seen == {"client": ["203.0.113.7", 0], "scheme": "https", "host": "shop.example"}


def test_trusted_peer_forwarded(start):
    server = start(forwarded_allow_ips="127.0.0.0/8")
    seen = ask(server, b'Forwarded: for="[2001:db8::7]:4711";proto=https;host=shop.example')
    assert seen == {"client": ["2001:db8::7", 4711], "scheme": "https", "host": "shop.example"}


def test_untrusted_peer_is_ignored(start):
    server = start(forwarded_allow_ips="10.0.0.1")
    seen = ask(server, b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-Proto: https",
               b"X-Forwarded-Host: shop.example", b"Forwarded: for=198.51.100.1;host=other.example")
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] > 0
    assert seen["scheme"] == "http" and seen["host"] == "internal:8000"


def test_proxy_headers_off(start):
    server = start(proxy_headers=False)
    seen = ask(server, b"X-Forwarded-For: 203.0.113.7", b"X-Forwarded-Proto: https",
               b"X-Forwarded-Host: shop.example")
    assert seen["client"][0] == "127.0.0.1"
    assert seen["scheme"] == "http" and seen["host"] == "internal:8000"


def test_trust_all(start):
    server = start(forwarded_allow_ips="*")
    assert ask(server, b"X-Forwarded-For: 198.51.100.1, 203.0.113.7")["client"] == ["198.51.100.1", 0]


def test_no_proxy_headers_from_trusted_peer(start):
    server = start()
    seen = ask(server)
    assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"
