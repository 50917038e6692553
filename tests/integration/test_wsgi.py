"""WSGI apps served for real: sockets, http.client, curl, requests and httpx."""

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import warnings
from wsgiref.validate import validator

import pytest

from selectserver import connection as connection_module
from tests.apps import wsgi_apps
from tests.integration.conftest import raw_exchange, read_response
from tests.integration.processes import wait_until
from tests.integration.test_tls import certificate  # noqa: F401  (a fixture)

MIB = 1024 * 1024


def read_until_broken(server, request):
    """What the server sends before it closes or resets the connection, and how it ended."""
    received = b""
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(request)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return received, "closed"
                received += chunk
        except ConnectionResetError:
            return received, "reset"


def get(server, path="/", method="GET", body=None, headers=None):
    client = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        client.request(method, path, body=body, headers=headers or {})
        response = client.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        client.close()


# -- basics ----------------------------------------------------------------------------


def test_hello_is_detected_as_wsgi_and_framed(serve):
    server = serve(wsgi_apps.hello)
    assert server.worker.interface == "wsgi"
    status, headers, body = get(server)
    assert (status, body) == (200, b"Hello, world!")
    assert headers["content-length"] == "13"


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
def test_pool_threads_do_not_preempt_the_loop_on_wakeup(serve):
    server = serve(wsgi_apps.scheduling_policy)
    status, _, body = get(server)
    assert (status, int(body)) == (200, os.SCHED_BATCH)


def test_pipelined_requests_leave_the_pool_in_order(serve):
    server = serve(wsgi_apps.echo, threads=4)
    requests = [b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n%02d" % (n, n)
                for n in range(20)]
    requests.append(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = raw_exchange(server.address, b"".join(requests))
    assert re.findall(rb"x-path: (/\w+)", response, re.I) == [b"/%d" % n for n in range(20)] + [b"/last"]
    assert response.count(b"HTTP/1.1 200 OK") == 21


def test_environ_over_the_wire(serve):
    server = serve(wsgi_apps.environ_json, root_path="/mount")
    status, _, body = get(server, "/mount/caf%C3%A9?a=1&b=%20", headers={
        "X-Custom": "one", "Cookie": "a=1", "Content-Type": "text/x"})
    environ = json.loads(body)
    assert status == 200
    assert environ["SCRIPT_NAME"] == "/mount"
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["HTTP_X_CUSTOM"] == "one" and environ["HTTP_COOKIE"] == "a=1"
    assert environ["CONTENT_TYPE"] == "text/x"
    assert environ["SERVER_PORT"] == str(server.address[1])
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.multithread"] is True


def test_underscore_headers_cannot_spoof_dash_ones(serve):
    server = serve(wsgi_apps.environ_json)
    request = (b"GET / HTTP/1.1\r\nHost: x\r\nX-Auth-User: real\r\nX_Auth_User: spoofed\r\n"
               b"Connection: close\r\n\r\n")
    response = raw_exchange(server.address, request)
    environ = json.loads(response.partition(b"\r\n\r\n")[2])
    assert environ["HTTP_X_AUTH_USER"] == "real"


def test_streamed_generator_and_write(serve):
    server = serve(wsgi_apps.streamed)
    status, headers, body = get(server)
    assert body == b"".join(b"part %d\n" % n for n in range(5))
    assert headers["transfer-encoding"] == "chunked"
    server = serve(wsgi_apps.uses_write)
    assert get(server)[2] == b"written, then returned"


def test_http_1_0_client_gets_a_body_ended_by_close(serve):
    server = serve(wsgi_apps.streamed)
    response = raw_exchange(server.address, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"".join(b"part %d\n" % n for n in range(5))


# -- the request body --------------------------------------------------------------------


def test_chunked_request_body(serve):
    server = serve(wsgi_apps.echo)
    client = http.client.HTTPConnection(*server.address, timeout=10)
    client.request("POST", "/", body=iter([b"abc", b"def", b"g" * 100000]), encode_chunked=True)
    response = client.getresponse()
    assert response.read() == b"abcdef" + b"g" * 100000
    client.close()


def test_readline_iteration_over_the_body(serve):
    server = serve(wsgi_apps.echo_lines)
    lines = b"".join(b"line %d\n" % n for n in range(1000))
    status, headers, body = get(server, method="POST", body=lines)
    assert body == lines and headers["X-Lines"] == "1000"


def send_after_continue(sock, body):
    """Wait for the interim 100 Continue, send ``body``; returns what came after the 100."""
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += sock.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(body)
    return interim.partition(b"\r\n\r\n")[2]


def test_100_continue_only_when_the_app_reads_a_streamed_body(serve):
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n")
    server = serve(wsgi_apps.echo, wsgi_stream_input=True)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(head)
        status, _, body, _ = read_response(sock, send_after_continue(sock, b"hello"))
        assert (status, body) == (200, b"hello")
    server = serve(wsgi_apps.never_reads, wsgi_stream_input=True)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(head)
        status, _, body, _ = read_response(sock)
        assert (status, body) == (200, b"not interested")


def test_100_continue_at_once_when_the_body_is_buffered(serve):
    # The body is collected before the app runs, so the client is asked for
    # it at once, whether the app will read it or not.
    server = serve(wsgi_apps.never_reads)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        status, _, body, _ = read_response(sock, send_after_continue(sock, b"hello"))
        assert (status, body) == (200, b"not interested")


def test_large_upload_stays_in_bounded_buffers(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.slow_reader(probe), wsgi_stream_input=True)
    probe.server = server
    total = 64 * MIB
    piece = b"z" * MIB

    def body():
        for _ in range(total // MIB):
            yield piece

    client = http.client.HTTPConnection(*server.address, timeout=60)
    client.request("POST", "/", body=body(), headers={"Content-Length": str(total)})
    response = client.getresponse()
    assert response.read() == str(total).encode()
    client.close()
    config = server.config
    # The app's buffer: its high-water mark plus the last piece taken from the
    # connection; the connection's: its mark plus one recv().
    assert probe.peaks["app"] <= config.read_buffer_high_bytes + config.read_buffer_high_bytes + 65536
    assert probe.peaks["connection"] <= config.read_buffer_high_bytes + connection_module.RECV_BYTES
    assert probe.peaks["app"] > 0


def test_client_leaving_mid_body_raises_in_read_and_closes(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.reads_until_gone(probe), wsgi_stream_input=True)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 5000)
        assert probe.started.wait(10)
    assert probe.closed.wait(10)
    assert len(probe.errors) == 1 and isinstance(probe.errors[0], OSError)


# -- bodies collected before the app runs -----------------------------------------------------


def open_trickler(server, sent=b"a"):
    """A connection that sent its head and part of a body, and stays."""
    sock = socket.create_connection(server.address, timeout=10)
    sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + sent)
    return sock


def counts_bodies(seen):
    """Answers at once; records the length of each body it was given."""

    def app(environ, start_response):
        seen.append(len(environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def test_slow_uploads_hold_no_thread(serve):
    # Issue 10: as many slow uploads as threads (and ten times more) used to
    # stop every other request.  Their bodies are collected on the loop now.
    seen = []
    server = serve(counts_bodies(seen), threads=2)
    tricklers = [open_trickler(server) for _ in range(20)]
    try:
        for sock in tricklers[:5]:
            sock.sendall(b"b")   # still arriving, a byte at a time
        status, _, body = get(server, "/other")
        assert (status, body) == (200, b"ok")
        assert seen == [0]   # no slow upload reached the app
    finally:
        for sock in tricklers:
            sock.close()


def test_a_client_leaving_mid_body_never_reaches_the_app(serve):
    seen = []
    server = serve(counts_bodies(seen), threads=1)
    # 700 KB: more than the in-memory bound, so part of it went to a file.
    sock = open_trickler(server)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    sock.close()
    with socket.create_connection(server.address, timeout=10) as big:
        big.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                    + b"a" * 700000)
    # The pool's one thread is free: the next request is served.
    assert get(server, "/after")[0] == 200
    assert seen == [0]


def test_a_large_upload_is_spooled_and_read_whole(serve):
    server = serve(wsgi_apps.echo_lines)
    lines = b"".join(b"line %06d\n" % n for n in range(100000))   # 1.2 MB
    status, headers, body = get(server, method="POST", body=lines)
    assert status == 200 and body == lines and headers["X-Lines"] == "100000"


def test_a_full_queue_answers_503_without_calling_the_app(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.blocking(probe), threads=1, threads_queue=1)
    results = []

    def request(path):
        results.append(get(server, path))

    first = threading.Thread(target=request, args=("/block",))
    first.start()
    try:
        assert probe.started.wait(10)          # the one thread is busy
        second = threading.Thread(target=request, args=("/queued",))
        second.start()
        wait_until(lambda: _started(server, b"/queued"), message="/queued taken into the queue")
        status, headers, body = get(server, "/refused")   # the queue is full
        assert status == 503
        assert headers["retry-after"] == "1" and headers["connection"] == "close"
    finally:
        probe.release.set()
        first.join(10)
        second.join(10)
    assert sorted(r[0] for r in results) == [200, 200]


def _started(server, target):
    """Has the server begun the request for ``target`` (its cycle is queued)?"""
    return any(conn.request is not None and conn.request.target == target
               for conn in list(server.worker.state.connections))


# -- the thread pool ------------------------------------------------------------------------


def test_a_blocked_app_does_not_stall_other_connections(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.blocking(probe))
    results = {}

    def blocked_request():
        results["block"] = get(server, "/block")

    thread = threading.Thread(target=blocked_request)
    thread.start()
    try:
        assert probe.started.wait(10)
        for number in range(20):
            assert get(server, "/fast%d" % number)[2] == b"/fast%d" % number
        assert "block" not in results and thread.is_alive()
    finally:
        probe.release.set()
        thread.join(10)
    assert results["block"][2] == b"/block"


def test_a_blocked_app_does_not_hold_up_the_quick_ones(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.blocking(probe))
    blocked = {}
    holder = threading.Thread(target=lambda: blocked.update(answer=get(server, "/block")))
    holder.start()
    assert probe.started.wait(10)
    # Answered while /block is still held in the app.
    assert [get(server, "/q%d" % n)[2] for n in range(5)] == [b"/q%d" % n for n in range(5)]
    assert "answer" not in blocked
    probe.release.set()
    holder.join(20)
    assert blocked["answer"][2] == b"/block"


def test_more_blocked_requests_than_threads_queue_up(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.blocking(probe), threads=2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get(server, "/block")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: probe.running == 2, message="two requests in the app")
    probe.release.set()
    for thread in threads:
        thread.join(20)
    assert [body for _, _, body in results] == [b"/block"] * 4
    assert probe.peaks["block"] == 2   # never more at once than there are threads


# -- the response --------------------------------------------------------------------------


def test_a_generator_reaches_the_client_piece_by_piece(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.gated_stream(probe))
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        for number in range(3):
            expected = b"part %d;" % number
            while expected not in received:
                chunk = sock.recv(65536)
                assert chunk, "closed early"
                received += chunk
            # The next part does not exist yet: it is produced after we open its gate.
            assert probe.produced == list(range(number + 1))
            probe.gates[number + 1].set()
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(65536)
    assert probe.closed.wait(10)


def test_a_large_stream_to_a_slow_client_is_bounded(serve):
    probe = wsgi_apps.Probe()
    total = 32 * MIB
    server = serve(wsgi_apps.large_stream(probe, total))
    probe.server = server
    got = 0
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # Read nothing until the loop has told the app to wait, and a while
        # longer, so that an app that did not wait would overshoot.
        deadline = time.monotonic() + 20
        while not any(getattr(conn.cycle, "blocked", False)
                      for conn in list(server.worker.state.connections)):
            assert time.monotonic() < deadline, "the write buffer never filled"
            time.sleep(0.01)
        time.sleep(0.2)
        while True:
            chunk = sock.recv(16384)
            if not chunk:
                break
            got += len(chunk)
    assert got > total
    assert probe.peaks["write_buffer"] > 0   # the client did fall behind
    # The app waits above the mark: at most the mark, the bytes in flight
    # (the mark again) and one piece are ever queued.
    high = server.config.write_buffer_high_bytes
    assert probe.peaks["write_buffer"] <= 2 * high + 65536 + 4096


def test_client_disconnect_calls_close(serve):
    probe = wsgi_apps.Probe()
    server = serve(wsgi_apps.endless_stream(probe))
    probe.server = server
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < 2 * MIB:
            received += len(sock.recv(65536))
    assert probe.closed.wait(10)


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_error_before_start_is_a_500_and_the_server_goes_on(serve, caplog):
    server = serve(wsgi_apps.raises_before_start)
    status, _, body = get(server)
    assert status == 500 and b"boom" not in body
    assert "boom before start" in caplog.text
    assert get(server)[0] == 500


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_error_after_start_breaks_the_connection(serve):
    server = serve(wsgi_apps.raises_after_start)
    response, ending = read_until_broken(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # A reset may destroy what the client had not read yet; it never sees an end.
    assert ending == "reset" or response.startswith(b"HTTP/1.1 200 OK")
    assert not response.endswith(b"0\r\n\r\n")


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
def test_exc_info_rules(serve):
    server = serve(wsgi_apps.replaces_head_with_exc_info)
    status, _, body = get(server)
    assert (status, body) == (503, b"the app's own error page")
    server = serve(wsgi_apps.exc_info_after_head)
    response, ending = read_until_broken(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ending == "reset" or response.startswith(b"HTTP/1.1 200 OK")
    assert b"never sent" not in response and not response.endswith(b"0\r\n\r\n")


@pytest.mark.expect_errors(r"^Exception in WSGI application \(GET /\)")
@pytest.mark.parametrize("app", [wsgi_apps.bad_header, wsgi_apps.bad_status])
def test_invalid_head_is_a_500_never_sent(serve, app):
    server = serve(app)
    response = raw_exchange(server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 500 ")
    assert b"stolen" not in response and b"never sent" not in response


def test_content_length_is_respected(serve):
    server = serve(wsgi_apps.too_long)
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_response(sock)
        second = read_response(sock, first[3])
    assert first[2] == second[2] == b"12345"
    server = serve(wsgi_apps.too_short)
    response = raw_exchange(server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.endswith(b"\r\n\r\n12345")   # then closed: the client sees it short


# -- files --------------------------------------------------------------------------------


def test_file_wrapper_uses_sendfile(serve, tmp_path, monkeypatch):
    data = os.urandom(3 * MIB + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    calls = []
    real_sendfile = os.sendfile

    def counting_sendfile(*args):
        calls.append(args[3])
        return real_sendfile(*args)

    monkeypatch.setattr(connection_module.os, "sendfile", counting_sendfile)
    server = serve(wsgi_apps.file_wrapper)
    status, headers, body = get(server, "/?path=%s" % path)
    assert status == 200 and body == data
    assert headers["content-length"] == str(len(data))
    assert sum(calls) >= len(data)
    status, headers, body = get(server, "/?path=%s" % path, method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(data)))


@pytest.mark.requires_program("openssl")
def test_file_wrapper_over_tls_is_read_not_sendfiled(serve, tmp_path, monkeypatch, certificate):
    data = os.urandom(3 * MIB + 5)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    calls = []
    monkeypatch.setattr(connection_module.os, "sendfile", lambda *args: calls.append(args))
    server = serve(wsgi_apps.file_wrapper, ssl_certfile=certificate["cert"],
                   ssl_keyfile=certificate["key"])
    context = ssl.create_default_context(cafile=certificate["cert"])
    client = http.client.HTTPSConnection(*server.address, context=context, timeout=30)
    for _ in range(2):   # twice on one connection: the response ended cleanly
        client.request("GET", "/?path=%s" % path)
        response = client.getresponse()
        assert response.status == 200 and response.read() == data
    client.close()
    assert calls == []


# -- validation and real clients ---------------------------------------------------------


def validated_app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    line = environ["wsgi.input"].readline(100)
    write = start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body) + len(line) + 4))])
    write(b"got:")
    return [body, line]


def test_wsgiref_validator_finds_nothing(serve):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server = serve(validator(validated_app))
        assert server.worker.interface == "wsgi"
        assert get(server)[2] == b"got:"
        assert get(server, method="POST", body=b"payload")[2] == b"got:payload"
        assert get(server, "/p?q=1", method="PUT", body=b"x" * 100000)[2] == b"got:" + b"x" * 100000
    assert [str(w.message) for w in caught if "wsgiref" in (w.filename or "")
            or w.category.__name__ == "WSGIWarning"] == []


def test_curl_upload_with_expect_continue(serve, tmp_path, program):
    curl = program("curl")
    data = os.urandom(2 * MIB)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    server = serve(wsgi_apps.echo)
    out = tmp_path / "out.bin"
    result = subprocess.run(
        [curl, "-sS", "-v", "--data-binary", "@%s" % path, "-o", str(out), server.url + "/up"],
        capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"100 Continue" in result.stderr
    assert out.read_bytes() == data
    result = subprocess.run(
        [curl, "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary", "@%s" % path,
         "-o", str(out), server.url], capture_output=True, timeout=60)
    assert result.returncode == 0 and out.read_bytes() == data


@pytest.mark.requires("requests")
def test_requests_client(serve):
    import requests

    server = serve(wsgi_apps.echo)
    with requests.Session() as session:
        for number in range(5):
            response = session.post(server.url + "/r?n=%d" % number, data=b"body %d" % number)
            assert response.content == b"body %d" % number
            assert response.headers["X-Query"] == "n=%d" % number


@pytest.mark.requires("httpx")
def test_httpx_client_streams_both_ways(serve):
    import httpx

    server = serve(wsgi_apps.echo)

    def upload():
        for _ in range(50):
            yield b"q" * 10000

    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/", content=upload())
        assert response.content == b"q" * 500000
        with client.stream("GET", "/") as response:
            assert b"".join(response.iter_bytes()) == b""


def test_no_wake_up_from_a_thread_is_lost():
    """The loop writes its wake-up byte only when it may be blocked in
    select() (loop.py, ``_write_to_self``): hand it many callbacks from a
    thread, each while the loop waits for exactly that one; a lost wake-up
    would leave the loop asleep, which the watchdog turns into a failure."""
    from selectserver.loop import EventLoop

    loop = EventLoop()
    try:
        for round_number in range(300):
            done = loop.create_future()
            watchdog = loop.call_later(60, done.cancel)   # far beyond any delay
            thread = threading.Thread(
                target=loop.call_soon_threadsafe, args=(done.set_result, round_number))
            thread.start()
            assert loop.run_until_complete(done) == round_number
            watchdog.cancel()
            thread.join()
    finally:
        loop.close()
