"""--trace narrates the loop: a real server's trace, read line by line.

Each test serves real requests to ``python -m selectserver --trace`` and
checks that the lines a student reads appear in the order things happened
(other lines may come between them).  Times are left out of the match.
"""

import asyncio
import http.client
import os
import re
import socket
import ssl

import pytest

from tests.integration.processes import REPO
from tests.integration.test_tls import certificate  # noqa: F401  (a fixture)


async def paced(scope, receive, send):
    """Three chunks, 50 ms apart: each is a timer, a resumed task and a send."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for number in range(3):
        await send({"type": "http.response.body", "body": b"chunk %d\n" % number, "more_body": True})
        await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": b""})


def trace_of(server):
    assert server.stop() == 0
    text = server.log()
    # "  1.2345 conn fd 7 recv 78 bytes" -> "conn fd 7 recv 78 bytes"
    return [re.sub(r"^\s*\d+\.\d{4} ", "", line) for line in text.splitlines()]


def assert_in_order(lines, patterns):
    """Each pattern matches a line after the line the previous one matched."""
    position = 0
    for pattern in patterns:
        regex = re.compile(pattern)
        for index in range(position, len(lines)):
            if regex.search(lines[index]):
                position = index + 1
                break
        else:
            context = "\n".join(lines[max(0, position - 5):position + 40])
            pytest.fail("no line matching %r after line %d:\n%s" % (pattern, position, context))


def test_a_keep_alive_request_is_narrated(cli_server):
    server = cli_server("tests.apps.asgi_apps:hello", "--port", "0", "--trace")
    client = http.client.HTTPConnection(*server.address, timeout=10)
    for path in ("/first", "/second"):
        client.request("GET", path)
        assert client.getresponse().read() == b"Hello, world!"
    client.close()
    port = server.address[1]
    lines = trace_of(server)
    assert_in_order(lines, [
        r"^loop fd \d+ is the wake-up pipe",
        r"^loop register fd \d+ \(listener 127\.0\.0\.1:%d\) for R$" % port,
        r"^loop select\(timeout=.*\) .*-> fd \d+ \(listener 127\.0\.0\.1:%d\) R" % port,
        r"^conn accept fd (\d+) from 127\.0\.0\.1:\d+",
        r"^loop register fd \d+ \(127\.0\.0\.1:\d+\) for R$",
        r"^loop select\(timeout=.*-> fd \d+ \(127\.0\.0\.1:\d+\) R",
        r"^conn fd \d+ recv \d+ bytes$",
        r"^conn fd \d+ parser: head GET /first HTTP/1\.1$",
        r"^conn fd \d+ (idle|reading head) -> running",
        r"^app  AppTask-\d+ started: hello\(\) for GET /first",
        r"^conn fd \d+ running -> idle",
        r"^app  AppTask-\d+ finished: returned$",
        r"^conn fd \d+ send \d+ bytes$",
        # The same connection again: no accept, no register.
        r"^conn fd \d+ parser: head GET /second HTTP/1\.1$",
        r"^app  AppTask-\d+ started: hello\(\) for GET /second",
        r"^conn fd \d+ send \d+ bytes$",
        r"^conn fd \d+ recv: EOF",
        r"^conn fd \d+ idle -> closed",
        r"^loop unregister fd \d+ \(127\.0\.0\.1:\d+\)$",
    ])
    assert sum(1 for line in lines if line.startswith("conn accept fd")) == 1


def test_a_streaming_response_reads_timer_task_send(cli_server):
    server = cli_server("tests.integration.test_trace:paced", "--port", "0", "--trace")
    client = http.client.HTTPConnection(*server.address, timeout=10)
    client.request("GET", "/stream")
    assert client.getresponse().read() == b"chunk 0\nchunk 1\nchunk 2\n"
    client.close()
    lines = trace_of(server)
    task = r"AppTask-\d+"
    # (No select() line is required before each timer: on a busy machine the
    # timer may be due before the loop gets back to select().)
    one_chunk = [
        r"^loop timer fired after 0\.\d+s: asyncio\.sleep\(0\.05\) of %s ends" % task,
        r"^loop select\(timeout=0, \d+ ready callbacks?: .*wake-up of %s" % task,
        r"^app  %s resumed: asyncio\.sleep\(0\.05\) is over$" % task,
        r"^conn fd \d+ send \d+ bytes$",
    ]
    assert_in_order(lines, [
        r"^conn fd \d+ parser: head GET /stream HTTP/1\.1$",
        r"^app  %s started: paced\(\) for GET /stream" % task,
        r"^app  %s suspended in paced\(\) > sleep\(\), waiting on asyncio\.sleep\(0\.05\)$" % task,
        r"^conn fd \d+ send \d+ bytes$",
    ] + one_chunk + one_chunk + one_chunk + [
        r"^conn fd \d+ running -> idle",
        r"^app  %s finished: returned$" % task,
    ])
    assert any(re.match(r"^loop select\(timeout=0\.0\d\d, until asyncio\.sleep\(0\.05\) of %s\)" % task, line)
               for line in lines)
    assert not any("nothing ready" in line for line in lines)


def test_topics_select_what_is_told(cli_server):
    server = cli_server("tests.apps.asgi_apps:hello", "--port", "0", "--trace", "app")
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
    lines = trace_of(server)
    assert any(re.match(r"^app  AppTask-\d+ started: hello\(\)", line) for line in lines)
    assert not any(line.startswith(("loop ", "conn ")) for line in lines)


def test_a_websocket_is_labelled_once_upgraded(cli_server):
    import base64
    import os

    server = cli_server("tests.apps.ws_apps:echo", "--port", "0", "--trace")
    with socket.create_connection(server.address, timeout=10) as sock:
        key = base64.b64encode(os.urandom(16))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101")
        mask = b"\x01\x02\x03\x04"
        sock.sendall(b"\x81\x82" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi")))
        echoed = answer.partition(b"\r\n\r\n")[2]
        while len(echoed) < 4:
            echoed += sock.recv(4096)
        assert echoed == b"\x81\x02hi"
    lines = trace_of(server)
    assert_in_order(lines, [
        r"^conn fd \d+ running -> upgraded",
        r"^app  AppTask-\d+ suspended in echo\(\) > receive\(\), waiting on a Future$",
        r"^loop select\(.*-> fd \d+ \(websocket 127\.0\.0\.1:\d+\) R",
        r"^conn fd \d+ recv 8 bytes$",
        r"^app  AppTask-\d+ resumed: the Future it waited on is done$",
        r"^conn fd \d+ send 4 bytes$",
    ])


CHECKED_BLOCK = re.compile(r"<!-- checked: tests/integration/test_trace\.py -->\n```\n(.*?)```", re.S)


def excerpt_patterns(block):
    """docs/trace.md's lines as patterns: numbers may differ, and so may
    whether a select() says how long it waited.  A select() that timed out
    for the worker tick depends on when the tick fell, and is left out."""
    patterns = []
    for line in block.splitlines():
        text = re.sub(r"^\s*\d+\.\d{4} ", "", line)
        if text.strip() == "..." or ("the worker tick" in text and text.endswith("-> timed out")):
            continue
        text = re.sub(r" waited \d+\.\d+s", "", text)
        parts = re.split(r"\d+", text)
        pattern = r"\d+".join(re.escape(part) for part in parts)
        pattern = pattern.replace(re.escape(") ->"), r"\)(?: waited \d+\.\d+s)? \->")
        patterns.append("^" + pattern + "$")
    return patterns


def test_the_excerpts_in_docs_trace_md_are_what_the_server_prints(cli_server):
    with open(os.path.join(REPO, "docs", "trace.md")) as page:
        blocks = CHECKED_BLOCK.findall(page.read())
    assert len(blocks) == 2
    server = cli_server("selectserver.demo:app", "--port", "0", "--trace", "--no-access-log")
    client = http.client.HTTPConnection(*server.address, timeout=10)
    for path in ("/", "/json"):
        client.request("GET", path)
        client.getresponse().read()
    client.close()
    client = http.client.HTTPConnection(*server.address, timeout=10)
    client.request("GET", "/stream")
    assert client.getresponse().read().count(b"\n") == 10
    client.close()
    lines = trace_of(server)
    for block in blocks:
        assert_in_order(lines, excerpt_patterns(block))


def test_a_wsgi_request_is_handed_to_a_thread_and_back(cli_server):
    server = cli_server("tests.apps.wsgi_apps:echo", "--port", "0", "--trace")
    client = http.client.HTTPConnection(*server.address, timeout=10)
    client.request("POST", "/", body=b"hello")
    assert client.getresponse().read() == b"hello"
    client.close()
    lines = trace_of(server)
    assert_in_order(lines, [
        r"^conn fd \d+ parser: head POST / HTTP/1\.1$",
        r"^conn fd \d+ parser: body, 5 bytes$",
        r"^loop run callback: hand the WSGI requests of this turn to the thread pool$",
        r"^app  WSGI POST / on fd \d+: queued -> running \(started, in thread selectserver-wsgi-\d+\)$",
        r"^app  WSGI POST / on fd \d+: running -> done \(ended, in thread selectserver-wsgi-\d+\)$",
        # Named where the loop takes it: in a select() line if it was queued
        # before that select(), else as the callback runs.
        r"^loop .*do what WSGI threads asked: respond_on_loop",
        r"^conn fd \d+ send \d+ bytes$",
        r"^conn fd \d+ running -> idle",
    ])
    # The body came with its head: the cycle never waited in RECEIVING.
    assert not any("receiving the body" in line for line in lines)
    # The thread's call_soon_threadsafe() wrote to the wake-up pipe if the
    # loop may have been blocked in select() (it sleeps there while the one
    # request is on a thread, unless the machine delayed it that long): a
    # select() saw it before the one that saw the client leave, or with it;
    # else a select() that did not block found the callback ready.
    started = next(i for i, line in enumerate(lines) if "queued -> running" in line)
    eof = next(i for i, line in enumerate(lines) if re.match(r"^conn fd \d+ recv: EOF", line))
    assert any(re.match(r"^loop select\(.*-> .*fd \d+ \(wake-up pipe\) R", line)
               or re.match(r"^loop select\(timeout=0, .*do what WSGI threads asked", line)
               for line in lines[started:eof])


def test_tls_handshake_and_decrypted_bytes_are_narrated(cli_server, certificate):  # noqa: F811
    server = cli_server("tests.apps.asgi_apps:hello", "--port", "0", "--trace",
                        "--ssl-certfile", certificate["cert"], "--ssl-keyfile", certificate["key"])
    context = ssl.create_default_context(cafile=certificate["cert"])
    client = http.client.HTTPSConnection(*server.address, context=context, timeout=10)
    client.request("GET", "/secure")
    assert client.getresponse().read() == b"Hello, world!"
    client.close()
    lines = trace_of(server)
    assert_in_order(lines, [
        r"^conn accept fd (\d+) from 127\.0\.0\.1:\d+",
        r"^conn fd \d+ speaks TLS: recv/send below count decrypted bytes$",
        r"^conn fd \d+ TLS handshake done: TLSv1\.\d, \S+$",
        r"^conn fd \d+ recv \d+ bytes$",
        r"^conn fd \d+ parser: head GET /secure HTTP/1\.1$",
        r"^conn fd \d+ send \d+ bytes$",
    ])
    assert not any("not traced" in line for line in lines)
