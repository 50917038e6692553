"""Hostile and broken input over real sockets: a clear 4xx, a close, and a
worker that keeps serving."""

import glob
import json
import os
import random
import re
import socket
import threading
import time

import pytest

from tests.apps import asgi_apps
from tests.integration.conftest import raw_exchange, read_response

STATUS_LINE = re.compile(rb"(?m)^HTTP/1\.1 \d{3} ")
CORPUS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "corpus", "invalid")

CASES = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                        # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),                  # two Hosts
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n", 400),                 # space before colon
    (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n folded\r\n\r\n", 400),          # obs-fold
    (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", 400),                # NUL
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # RFC 9112 §6.3: chunked not last in a request is a 400; an unknown
    # coding before a final chunked is a 501.
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n", 417),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
]


@pytest.mark.parametrize("request_bytes,status", CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_requests_get_a_clear_status_and_a_close(serve, request_bytes, status):
    server = serve(asgi_apps.echo)
    reply = raw_exchange(server.address, request_bytes)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
    assert b"connection: close" in reply.lower()
    # Exactly one response, then the close (raw_exchange reads to EOF).
    assert len(STATUS_LINE.findall(reply)) == 1
    # The worker is fine.
    assert raw_exchange(server.address, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        ).startswith(b"HTTP/1.1 200 ")


def corpus_cases():
    for path in sorted(glob.glob(os.path.join(CORPUS, "*.http"))):
        with open(path[:-5] + ".json") as file:
            expected = json.load(file)
        options = {LIMIT_OPTIONS[name]: value for name, value in expected.get("limits", {}).items()}
        yield pytest.param(path, expected["status"], options, id=os.path.basename(path)[:-5])


# The parser's Limits fields, as server options.
LIMIT_OPTIONS = {
    "max_request_line_bytes": "limit_request_line_bytes",
    "max_header_bytes": "limit_request_header_bytes",
    "max_header_count": "limit_request_fields",
    "max_body_bytes": "limit_request_body_bytes",
}


@pytest.mark.parametrize("path,status,options", list(corpus_cases()))
def test_invalid_corpus_over_a_socket(serve, path, status, options):
    server = serve(asgi_apps.count_body, **options)
    with open(path, "rb") as file:
        data = file.read()
    reply = raw_exchange(server.address, data, shutdown=True)
    # A response may come first when the bad part is in a later pipelined
    # request or in the body; the last one must be the error, then the close.
    statuses = STATUS_LINE.findall(reply)
    assert statuses, reply[:300]
    assert statuses[-1] == b"HTTP/1.1 %d " % status, reply[:300]


def test_body_limit(serve):
    server = serve(asgi_apps.count_body, limit_request_body_bytes=1000)
    reply = raw_exchange(server.address, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ")
    chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"200\r\n" + b"z" * 512 + b"\r\n") * 2 + b"0\r\n\r\n")
    reply = raw_exchange(server.address, chunked)
    assert reply.startswith(b"HTTP/1.1 413 ")
    ok = raw_exchange(server.address, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                      b"Connection: close\r\n\r\n" + b"a" * 1000)
    assert ok.endswith(b"\r\n\r\n4\r\n1000\r\n0\r\n\r\n")


def test_custom_request_line_limit(serve):
    server = serve(asgi_apps.hello, limit_request_line_bytes=100)
    reply = raw_exchange(server.address, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 414 ")


# Deadlines are tested in the hard direction: not only that a slow client is
# dropped at last, but that it is dropped at its deadline.  The worker looks
# at deadlines once a second, so a 1 s deadline ends between 1 and 2 s; the
# bounds leave room for a loaded machine and still fail a deadline that
# moves (a trickle would never end) or a fixed one (5 s).
EARLIEST_S, LATEST_S = 0.8, 4.0


def trickle(sock, data, pace_s=0.1, limit_s=8.0):
    """Send ``data`` a byte every ``pace_s`` until the server answers or closes.

    Returns (seconds from the first byte to the answer or close, the reply).
    """
    sock.settimeout(pace_s)
    started = time.monotonic()
    for index in range(len(data)):
        assert time.monotonic() - started < limit_s, "no answer after %.0f s of trickling" % limit_s
        try:
            sock.sendall(data[index:index + 1])
            first = sock.recv(65536)
        except socket.timeout:
            continue
        ended = time.monotonic() - started
        sock.settimeout(10)
        return ended, (first + read_to_close(sock)) if first else b""
    raise AssertionError("ran out of bytes to trickle")


def read_to_close(sock):
    """What the server still sends, up to its close; a reset fails the test."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_idle_connection_is_closed_after_keep_alive_timeout(serve):
    server = serve(asgi_apps.hello, timeout_keep_alive_s=1)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _, _, body, rest = read_response(sock)
        idle_since = time.monotonic()
        assert body == b"Hello, world!"
        # Blocks until the server closes (or the 10 s socket timeout fails the test).
        assert sock.recv(100) == b""
        assert EARLIEST_S <= time.monotonic() - idle_since <= LATEST_S


def test_a_head_trickled_a_byte_at_a_time_gets_408_at_its_deadline(serve):
    server = serve(asgi_apps.hello, timeout_request_head_s=1)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000
    with socket.create_connection(server.address, timeout=10) as sock:
        seconds, reply = trickle(sock, head)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:100]
    assert EARLIEST_S <= seconds <= LATEST_S


def test_a_body_trickled_a_byte_at_a_time_gets_408_at_its_deadline(serve):
    # Each byte moves the deadline 1/500 s: a byte every 0.1 s does not keep up.
    server = serve(asgi_apps.echo, timeout_request_body_s=1, request_body_min_rate_bytes=500)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        seconds, reply = trickle(sock, b"b" * 1000)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:100]
    assert EARLIEST_S <= seconds <= LATEST_S


def test_silent_new_connection_is_closed_quietly(serve):
    server = serve(asgi_apps.hello, timeout_keep_alive_s=1)
    with socket.create_connection(server.address, timeout=10) as sock:
        assert sock.recv(100) == b""


def test_slow_head_gets_408(serve):
    server = serve(asgi_apps.hello, timeout_request_head_s=1)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        reply = b""
        while True:
            chunk = sock.recv(1000)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 ")


def test_many_clients_sending_garbage_concurrently(serve):
    server = serve(asgi_apps.echo)
    errors = []

    def client(seed):
        rng = random.Random(seed)
        for _ in range(20):
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
            # An answer (a 4xx) then a close, or a close alone (the client
            # left mid-head); never a reset, a hang or anything else.
            try:
                reply = raw_exchange(server.address, data, timeout=10, shutdown=True)
            except ConnectionError as exc:
                errors.append((data, repr(exc)))
                continue
            if reply.endswith(b"<timeout>") or reply and not reply.startswith(b"HTTP/1.1 4"):
                errors.append((data, reply[:100]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert raw_exchange(server.address, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        ).startswith(b"HTTP/1.1 200 ")
