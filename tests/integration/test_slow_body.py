"""A request body has a deadline: trickles end in 408, honest slow uploads pass."""

import socket
import threading
import time

from tests.apps import asgi_apps
from tests.integration.conftest import read_response

HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"


def read_all(sock):
    reply = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        reply += chunk
    return reply


def test_trickling_bodies_get_408_and_do_not_delay_a_normal_request(serve):
    server = serve(asgi_apps.echo, timeout_request_body_s=1)
    tricklers = [socket.create_connection(server.address, timeout=20) for _ in range(20)]
    started = time.monotonic()
    for sock in tricklers:
        sock.sendall(HEAD + b"x")
    stop = threading.Event()

    def trickle():
        # One more byte on each connection while the test runs (at most 20 s).
        while not stop.wait(0.25) and time.monotonic() - started < 20:
            for sock in tricklers:
                try:
                    sock.sendall(b"x")
                except OSError:
                    pass

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            status, _, body, _ = read_response(sock)
            assert (status, body) == (200, b"hello")
        replies = [read_all(sock) for sock in tricklers]
        ended = time.monotonic()
    finally:
        stop.set()
        thread.join()
        for sock in tricklers:
            sock.close()
    assert all(reply.startswith(b"HTTP/1.1 408 ") for reply in replies), replies[:2]
    # Not before their deadline: one second, plus 2 ms per byte they sent.
    assert ended - started >= 1.0


def test_a_slow_but_steady_upload_passes(serve):
    server = serve(asgi_apps.echo, timeout_request_body_s=1, request_body_min_rate_bytes=100)
    with socket.create_connection(server.address, timeout=20) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
        # 500 bytes a step, each earning 5 s at 100 bytes/s: longer in all
        # than the first second, never behind.
        for _ in range(6):
            time.sleep(0.3)
            sock.sendall(b"y" * 500)
        status, _, body, _ = read_response(sock)
    assert (status, body) == (200, b"y" * 3000)


def test_a_body_that_stops_after_the_response_started_is_cut(serve):
    server = serve(asgi_apps.wait_disconnect, timeout_request_body_s=1)
    with socket.create_connection(server.address, timeout=20) as sock:
        sock.sendall(HEAD + b"x")
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and b" 408 " not in reply
    # The app learnt it as a client leaving: http.disconnect.
    assert asgi_apps.DISCONNECT_SEEN.wait(10)
