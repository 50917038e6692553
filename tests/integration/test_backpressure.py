"""Bounded memory both ways: a fast client cannot flood a slow app, and a fast
app cannot flood a slow client.  The apps run on the loop thread, so they
can look at the connection's buffers between their awaits."""

import asyncio
import resource
import socket

import pytest

from tests.integration.conftest import read_response
from tests.integration.processes import ServerProcess

KIB = 1024
MIB = 1024 * KIB
HIGH = 256 * KIB


class Probe:
    """Records the largest buffers seen on the server's connections."""

    def __init__(self):
        self.server = None
        self.max_unread = 0
        self.max_unsent = 0

    def look(self):
        for conn in self.server.worker.state.connections:
            self.max_unread = max(self.max_unread, conn.parser.buffered_bytes)
            self.max_unsent = max(self.max_unsent, conn.write_buffer_bytes)


def test_a_fast_upload_waits_for_a_slow_app(serve):
    probe = Probe()

    async def slow_reader(scope, receive, send):
        if scope["type"] != "http":
            return
        total = 0
        while True:
            probe.look()
            message = await receive()
            total += len(message.get("body", b""))
            await asyncio.sleep(0.001)   # slower than the client sends
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(total).encode()})

    server = probe.server = serve(slow_reader, read_buffer_high_bytes=HIGH)
    size = 48 * MIB
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"u" * MIB
        for _ in range(size // MIB):
            sock.sendall(piece)
        status, _, body, _ = read_response(sock)
    assert (status, body) == (200, str(size).encode())
    # Reading stops above the mark; one recv() may overshoot it.
    assert 0 < probe.max_unread <= HIGH + 64 * KIB


def test_a_fast_download_waits_for_a_slow_client(serve):
    probe = Probe()
    size = 48 * MIB

    async def fast_writer(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        piece = b"d" * (64 * KIB)
        for sent in range(0, size, len(piece)):
            await send({"type": "http.response.body", "body": piece,
                        "more_body": sent + len(piece) < size})
            probe.look()

    server = probe.server = serve(fast_writer, write_buffer_high_bytes=HIGH)
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < size:
            chunk = sock.recv(256 * KIB)
            assert chunk
            received += len(chunk)
    assert received >= size
    # send() waits above the mark; one more piece may be queued past it.
    assert 0 < probe.max_unsent <= HIGH + 64 * KIB


def test_accept_errors_do_not_stop_the_server(tmp_path):
    """Out of file descriptors: accept() fails with EMFILE; the worker pauses
    accepting instead of spinning, and serves again once descriptors free up."""
    limit = 64

    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    server = ServerProcess(["tests.apps.asgi_apps:hello", "--port", "0", "--timeout-keep-alive", "60"],
                           preexec_fn=low_fd_limit)
    clients = [socket.create_connection(server.address, timeout=10) for _ in range(limit + 20)]
    server.wait_for_log("pausing accepts", timeout_s=20)
    for sock in clients:
        sock.close()
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[2] == b"Hello, world!"
    assert server.stop() == 0


@pytest.mark.parametrize("interface", ["asgi3", "wsgi"])
def test_a_pipelining_client_that_does_not_read_is_not_answered_without_bound(serve, interface):
    """Requests in a loop, no answer read: the server stops reading (and
    answering) while its answers wait, so the client's send() stalls instead
    of the worker's memory growing; reading resumes as the answers leave."""
    probe = Probe()
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

    def look_and_answer():
        probe.look()
        for conn in probe.server.worker.state.connections:
            # Small kernel buffers: fewer requests before the stall.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KIB)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
        return b"hello"

    if interface == "asgi3":
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            body = look_and_answer()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
    else:
        def app(environ, start_response):
            body = look_and_answer()
            start_response("200 OK", [("Content-Length", "5")])
            return [body]

    # The stalled connection waits in IDLE, bounded by the keep-alive
    # timeout: longer here than the client's wait for its send() to stall.
    server = probe.server = serve(app, interface=interface, write_buffer_high_bytes=64 * KIB,
                                  timeout_keep_alive_s=60)
    batch = memoryview(request * 1000)
    sent = 0
    with socket.create_connection(server.address, timeout=1) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KIB)
        # Far more than the kernel's buffers hold: without the pause, the
        # server answers all of them and queues the answers.
        for _ in range(4000):
            try:
                sent += sock.send(batch[sent % len(batch):])
            except socket.timeout:
                break
        else:
            raise AssertionError("the server read %d requests, all it was sent" % (sent // len(request)))
        requests = sent // len(request)
        sock.settimeout(30)
        # Every whole request sent is answered once the client reads.
        answers, tail = 0, b""
        while answers < requests:
            chunk = sock.recv(256 * KIB)
            assert chunk
            data = tail + chunk
            answers += data.count(b"HTTP/1.1 200 ")
            tail = data[-12:]
    assert answers == requests
    # One answer may be queued past the mark before the next request waits.
    assert probe.max_unsent <= 64 * KIB + 1024
