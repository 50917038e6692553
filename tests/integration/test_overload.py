"""--limit-concurrency N: N requests in flight are served, the excess gets a
503 with Retry-After and connection: close at once, without the app."""

import asyncio
import socket
import threading
import time

import pytest

from tests.integration.conftest import read_response

LIMIT = 2
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Gate:
    """Apps that hold every request until the test opens the gate, and
    count the requests they were given."""

    def __init__(self):
        self.opened = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def _enter(self):
        with self._lock:
            self.entered += 1

    async def asgi(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self._enter()
        while not self.opened.is_set():
            await asyncio.sleep(0.005)   # concurrent, as a real await would be
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served"})

    def wsgi(self, environ, start_response):
        self._enter()
        self.opened.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served"]

    def wait_entered(self, count):
        deadline = time.monotonic() + 30
        while self.entered < count:
            assert time.monotonic() < deadline, "the app was given %d requests" % self.entered
            time.sleep(0.01)


def _read_to_close(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _queued(server, count):
    """Are ``count`` requests handed to the server's WSGI pool (running or queued)?"""
    state = server.worker.state
    return sum(conn.cycle is not None for conn in list(state.connections)) >= count


# limit: --limit-concurrency LIMIT refuses the request over it; queue: one
# WSGI thread and --threads-queue LIMIT-1 (one request runs, the rest wait
# for the thread) refuse the request the queue has no room for.
@pytest.mark.parametrize("interface, bound", [("asgi3", "limit"), ("wsgi", "limit"),
                                              ("wsgi", "queue")])
def test_admitted_requests_are_served_and_the_excess_is_refused(serve, interface, bound):
    gate = Gate()
    app = gate.wsgi if interface == "wsgi" else gate.asgi
    if bound == "limit":
        server = serve(app, interface=interface, limit_concurrency=LIMIT)
    else:
        server = serve(app, interface=interface, threads=1, threads_queue=LIMIT - 1)
    admitted = [socket.create_connection(server.address, timeout=10) for _ in range(LIMIT)]
    try:
        if bound == "limit":
            for sock in admitted:
                sock.sendall(REQUEST)
            gate.wait_entered(LIMIT)
        else:
            # One by one: requests read in the same turn of the loop reach
            # the queue together, before the thread has taken the first.
            admitted[0].sendall(REQUEST)
            gate.wait_entered(1)
            for count, sock in enumerate(admitted[1:], 2):
                sock.sendall(REQUEST)
                deadline = time.monotonic() + 30
                while not _queued(server, count):
                    assert time.monotonic() < deadline, "the request never reached the queue"
                    time.sleep(0.01)
        # LIMIT requests are in flight: every other one is refused while they
        # run, each with its own answer, and the app never sees it.
        for _ in range(3):
            with socket.create_connection(server.address, timeout=10) as excess:
                excess.sendall(REQUEST)
                reply = _read_to_close(excess)
            head = reply.partition(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 503 ")
            assert b"\r\nretry-after: 1" in head
            assert b"\r\nconnection: close" in head
        assert gate.entered == (LIMIT if bound == "limit" else 1)
        gate.opened.set()
        for sock in admitted:   # served in full, and kept alive
            assert read_response(sock)[:3:2] == (200, b"served")
        for sock in admitted:   # their slots were released, and taken again
            sock.sendall(REQUEST)
            assert read_response(sock)[:3:2] == (200, b"served")
        with socket.create_connection(server.address, timeout=10) as late:
            late.sendall(REQUEST)
            assert read_response(late)[:3:2] == (200, b"served")
    finally:
        gate.opened.set()
        for sock in admitted:
            sock.close()


def test_a_fast_app_is_never_refused(serve):
    # Requests that finish before the next is read are never in flight
    # together: many open connections are no overload.
    async def hello(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})

    server = serve(hello, limit_concurrency=1)
    socks = [socket.create_connection(server.address, timeout=10) for _ in range(4)]
    try:
        for _ in range(2):
            for sock in socks:
                sock.sendall(REQUEST)
                assert read_response(sock)[0] == 200
    finally:
        for sock in socks:
            sock.close()
