"""A client that leaves is normal: no ERROR, what the app held is released
at once, and the access log has a line for the cut response."""

import asyncio
import logging
import socket
import sys
import threading
import time

import pytest

from tests.conftest import requires

starlette = requires("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

def streaming_app(closed):
    async def numbers():
        try:
            number = 0
            while True:
                yield b"%d\n" % number
                number += 1
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    async def stream(request):
        return StreamingResponse(numbers())

    async def upload(request: Request):
        body = await request.body()    # ClientDisconnect when the client leaves
        return PlainTextResponse(str(len(body)))

    return Starlette(routes=[Route("/", stream), Route("/upload", upload, methods=["POST"])])


def errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_streaming_generator_is_closed_as_soon_as_the_client_leaves(serve, caplog):
    closed = threading.Event()
    server = serve(streaming_app(closed), access_log=True)
    with caplog.at_level(logging.DEBUG, logger="selectserver"):
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.close()
        if sys.implementation.name != "pypy":
            # Its finally runs while the server goes on, not at shutdown.
            # (PyPy frees nothing by reference counting: there it waits
            # for a collection.)
            assert closed.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                r.name == "selectserver.access" for r in caplog.records):
            time.sleep(0.01)
    assert errors(caplog) == []
    access = [r.getMessage() for r in caplog.records if r.name == "selectserver.access"]
    assert len(access) == 1 and '"GET / HTTP/1.1" 200' in access[0]


def test_a_framework_exception_from_the_client_leaving_is_logged_at_debug(serve, caplog):
    closed = threading.Event()
    server = serve(streaming_app(closed))
    with caplog.at_level(logging.DEBUG, logger="selectserver"):
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                "client leaving" in r.getMessage() for r in caplog.records):
            time.sleep(0.01)
    assert errors(caplog) == []
    assert any("ClientDisconnect" in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records)


def test_our_own_disconnect_error_is_not_an_error_either(serve, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        await send({"type": "http.response.body", "body": b"late"})   # raises

    server = serve(app)
    with caplog.at_level(logging.DEBUG, logger="selectserver"):
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                "client leaving" in r.getMessage() for r in caplog.records):
            time.sleep(0.01)
    assert errors(caplog) == []
    assert any("ClientDisconnected" in r.getMessage() for r in caplog.records)


@pytest.mark.expect_errors("Exception in ASGI application")
def test_an_app_bug_after_the_client_left_is_still_an_error(serve, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive())["type"] != "http.disconnect":
            pass
        raise KeyError("a bug")

    server = serve(app)
    with caplog.at_level(logging.DEBUG, logger="selectserver"):
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not errors(caplog):
            time.sleep(0.01)
    assert "Exception in ASGI application" in errors(caplog)[0].getMessage()
