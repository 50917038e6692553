"""WebSockets served for real: the websockets library (sync and asyncio
clients) and a raw-socket client for what a polite client never sends."""

import asyncio
import base64
import json
import os
import socket
import struct
import threading
import time

import pytest

from selectserver.websocket import asgi as websocket_asgi
from selectserver.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
)
from tests.apps import ws_apps
from tests.apps.ws_apps import EVENTS
from tests.conftest import requires
from tests.integration.conftest import read_response, run_client
from tests.integration.test_tls import certificate  # noqa: F401 (a fixture)

websockets = requires("websockets")

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect as sync_connect  # noqa: E402


def connect(*args, **kwargs):
    """The sync client without its keep-alive thread: on PyPy 3.9 two threads
    joining the same thread at once can fail inside threading (the client's
    keep-alive and close() both join its reader thread)."""
    kwargs.setdefault("ping_interval", None)
    return sync_connect(*args, **kwargs)

MASK = b"\x01\x02\x03\x04"


@pytest.fixture(autouse=True)
def fresh_events():
    EVENTS.clear()
    yield


def ws_url(server, path="/"):
    host, port = server.address[:2]
    return "ws://%s:%d%s" % (host, port, path)


# -- a raw client -----------------------------------------------------------------------------


class RawClient:
    """A websocket client on a plain socket, for byte-exact tests."""

    def __init__(self, server, path="/", extra=b"", timeout=5.0):
        self.sock = socket.create_connection(server.address[:2], timeout=timeout)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          + extra)
        self.head = self._read_until(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed")
        self.buffer += chunk

    def _read_until(self, marker):
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exactly(self, count):
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, opcode, payload=b"", fin=True):
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=MASK))

    def recv_frame(self):
        """(opcode, payload) of the next server frame."""
        first, second = self._read_exactly(2)
        assert not second & 0x80
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read_exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read_exactly(8))[0]
        return first & 0x0F, self._read_exactly(length)

    def recv_close(self):
        """The code of the server's Close frame (skipping other frames)."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else 1005

    def at_eof(self, timeout=5.0):
        """True once the server closed the TCP connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self._fill()
        except EOFError:
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def offer_until_stalled(sock, block, limit_bytes, stall_s=1.0):
    """Send ``block`` over and over on a non-blocking socket until the peer
    has taken nothing for ``stall_s``, or ``limit_bytes`` went out; the
    bytes sent (the last block may be cut)."""
    sock.setblocking(False)
    sent = 0
    stalled_since = None
    while sent < limit_bytes:
        try:
            sent += sock.send(block[sent % len(block):])
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            if stalled_since is None:
                stalled_since = now
            elif now - stalled_since > stall_s:
                break
            time.sleep(0.01)
    return sent


def close_received(ws):
    """(code, reason) of the server's Close, which must come next."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return closed.value.rcvd.code, closed.value.rcvd.reason


# -- the websockets library -------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_sync_client_echo(serve, compression):
    server = serve(ws_apps.echo)
    with connect(ws_url(server), compression=compression) as ws:
        extensions = ws.response.headers.get("sec-websocket-extensions")
        assert (extensions is not None) == (compression is not None)
        assert ws.response.headers["x-accepted-by"] == "ws_apps.echo"
        for message in ("hello", "☃" * 1000, b"\x00\x01\xff", b"", ""):
            ws.send(message)
            assert ws.recv() == message
    assert EVENTS.get()["code"] == 1000


@pytest.mark.parametrize("compression", ["deflate", None])
def test_one_megabyte_messages(serve, compression):
    server = serve(ws_apps.echo)
    text = "".join(chr(0x41 + i % 26) for i in range(1 << 20))
    binary = os.urandom(1 << 20)
    with connect(ws_url(server), compression=compression, max_size=2 << 20) as ws:
        ws.send(text)
        assert ws.recv() == text
        ws.send(binary)
        assert ws.recv() == binary


def test_asyncio_clients_100_at_once(serve):
    from websockets.asyncio.client import connect as async_connect

    server = serve(ws_apps.echo)
    url = ws_url(server)

    async def one(number):
        compression = "deflate" if number % 2 else None
        async with async_connect(url, compression=compression) as ws:
            for i in range(10):
                message = "client %d message %d" % (number, i)
                await ws.send(message)
                assert await ws.recv() == message
        return number

    async def main():
        return await asyncio.gather(*(one(n) for n in range(100)))

    assert sorted(run_client(asyncio.wait_for(main(), 60))) == list(range(100))


def test_the_access_log_has_a_line_for_the_101(serve, caplog):
    server = serve(ws_apps.echo, access_log=True)
    with caplog.at_level("INFO", logger="selectserver.access"):
        with connect(ws_url(server, "/chat?x=1")) as ws:
            ws.send("hi")
            assert ws.recv() == "hi"
    lines = [r.getMessage() for r in caplog.records if r.name == "selectserver.access"]
    assert len(lines) == 1 and "/chat?x=1" in lines[0] and " 101" in lines[0], lines


def test_subprotocol_is_chosen_by_the_app(serve):
    server = serve(ws_apps.echo)
    with connect(ws_url(server), subprotocols=["v2.chat", "v1.chat"]) as ws:
        assert ws.subprotocol == "v2.chat"


def test_scope(serve):
    server = serve(ws_apps.lifespan_state, lifespan="on")
    with connect(ws_url(server, "/room/%E2%98%83?user=ann"), subprotocols=["chat"],
                 additional_headers={"X-Custom": "yes"}) as ws:
        ws.send("scope")
        scope = json.loads(ws.recv())
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/room/☃"
    assert scope["query_string"] == "user=ann"
    assert scope["subprotocols"] == ["chat"]
    assert scope["http_version"] == "1.1"
    assert scope["state"] == ["answer"]
    assert scope["extensions"] == ["websocket.http.response"]
    assert scope["spec_version"] == "2.4"
    assert "method" not in scope
    assert ["x-custom", "yes"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and scope["server"][1] == server.address[1]


def test_client_close_code_and_reason_reach_the_app(serve):
    server = serve(ws_apps.echo)
    with connect(ws_url(server)) as ws:
        ws.close(4001, "client is done")
    assert EVENTS.get() == {"type": "websocket.disconnect", "code": 4001, "reason": "client is done"}


def test_app_close_code_and_reason_reach_the_client(serve):
    server = serve(ws_apps.echo)
    with connect(ws_url(server)) as ws:
        ws.send("close:4002:server is done")
        closed = close_received(ws)
    assert closed == (4002, "server is done")
    # The app then hears the client's answering Close.
    assert EVENTS.get()["code"] == 4002


def test_close_before_accept_is_403(serve):
    server = serve(ws_apps.deny)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server))
    assert refused.value.response.status_code == 403


def test_denial_response(serve):
    server = serve(ws_apps.denial_response)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server))
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"go away, you"


@pytest.mark.expect_errors(r"^Exception in ASGI application \(websocket /\)",
                           "^ASGI app returned without accepting or closing the websocket /$")
@pytest.mark.parametrize("app", [ws_apps.raise_before_accept, ws_apps.return_before_accept])
def test_failure_before_accept_is_500(serve, app):
    server = serve(app)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server))
    assert refused.value.response.status_code == 500


@pytest.mark.expect_errors(r"^Exception in ASGI application \(websocket /\)")
def test_app_exception_after_accept_closes_with_1011(serve):
    server = serve(ws_apps.raise_after_accept)
    with connect(ws_url(server)) as ws:
        ws.send("anything")
        closed = close_received(ws)
    assert closed[0] == 1011


def test_app_that_returns_closes_with_1000(serve):
    server = serve(ws_apps.return_after_accept)
    with connect(ws_url(server)) as ws:
        assert ws.recv() == "bye"
        closed = close_received(ws)
    assert closed[0] == 1000


def test_send_after_disconnect_raises_an_oserror(serve):
    server = serve(ws_apps.send_after_disconnect)
    with connect(ws_url(server)) as ws:
        ws.send("hi")
    assert EVENTS.get() == ("raised", "ClientDisconnected")


def test_pings_from_the_client_are_answered(serve):
    server = serve(ws_apps.echo)
    with connect(ws_url(server)) as ws:
        assert ws.ping(b"are you there").wait(5)


def test_message_over_the_limit_closes_with_1009(serve):
    server = serve(ws_apps.echo, ws_max_size_bytes=1000)
    with connect(ws_url(server)) as ws:
        ws.send("x" * 1000)
        assert ws.recv() == "x" * 1000
        ws.send("x" * 1001)
        closed = close_received(ws)
    assert closed[0] == 1009
    assert EVENTS.get()["code"] == 1009


def test_compression_can_be_switched_off(serve):
    server = serve(ws_apps.echo, ws_per_message_deflate=False)
    with connect(ws_url(server), compression="deflate") as ws:
        assert ws.response.headers.get("sec-websocket-extensions") is None
        ws.send("still works")
        assert ws.recv() == "still works"


def test_a_compression_bomb_closes_with_1009(serve):
    import zlib

    server = serve(ws_apps.echo, ws_max_size_bytes=1 << 20)
    client = RawClient.__new__(RawClient)
    client.sock = socket.create_connection(server.address[:2], timeout=5)
    client.buffer = b""
    client.sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    assert b"permessage-deflate" in client._read_until(b"\r\n\r\n")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = b"".join(compressor.compress(b"\0" * (1 << 20)) for _ in range(64))
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    client.sock.sendall(encode_frame(OP_BINARY, bomb, rsv1=True, mask=MASK))
    assert client.recv_close() == 1009
    assert client.at_eof()
    client.close()


# -- the handshake over a raw socket ----------------------------------------------------------

HANDSHAKE = (b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def exchange(server, data):
    with socket.create_connection(server.address[:2], timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_accept_key_on_the_wire(serve):
    server = serve(ws_apps.echo)
    response = exchange(server, HANDSHAKE + b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response


def test_wrong_version_is_426_naming_13(serve):
    server = serve(ws_apps.echo)
    response = exchange(server, HANDSHAKE + b"Sec-WebSocket-Version: 8\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13\r\n" in response.lower()


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",                                      # no key
    HANDSHAKE.replace(b"Connection: Upgrade", b"Connection: keep-alive")
    + b"Sec-WebSocket-Version: 13\r\n\r\n",                                    # no upgrade token
    HANDSHAKE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short")
    + b"Sec-WebSocket-Version: 13\r\n\r\n",                                    # bad key
    HANDSHAKE.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Sec-WebSocket-Version: 13\r\n\r\n",
    HANDSHAKE + b"Sec-WebSocket-Version: 13\r\nContent-Length: 4\r\n\r\nbody",
    HANDSHAKE + b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a b, \xff\r\n\r\n",
])
def test_bad_handshakes_are_400(serve, request_bytes):
    server = serve(ws_apps.echo)
    assert exchange(server, request_bytes).startswith(b"HTTP/1.1 400 ")


def test_an_upgrade_to_something_else_is_plain_http(serve):
    server = serve(ws_apps.echo)
    response = exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
                                b"Connection: Upgrade\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 404 ")


def test_ws_none_serves_upgrades_as_http(serve):
    server = serve(ws_apps.plain_http, ws="none")
    response = exchange(server, HANDSHAKE + b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"http")


def test_wsgi_apps_answer_upgrades_as_http(serve):
    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"wsgi"]

    server = serve(wsgi_app, interface="wsgi")
    with socket.create_connection(server.address[:2], timeout=5) as sock:
        sock.sendall(HANDSHAKE + b"Sec-WebSocket-Version: 13\r\n\r\n")
        status, headers, body, _ = read_response(sock)
    assert (status, body) == (200, b"wsgi")


def test_frames_sent_with_the_handshake_are_not_lost(serve):
    server = serve(ws_apps.echo)
    client = RawClient(server, extra=encode_frame(OP_TEXT, b"early", mask=MASK))
    assert client.recv_frame() == (OP_TEXT, b"early")
    client.close()


# -- protocol faults --------------------------------------------------------------------------


@pytest.mark.parametrize("frame, code", [
    (encode_frame(OP_TEXT, b"unmasked"), 1002),
    (encode_frame(OP_TEXT, b"\xff\xfe", mask=MASK), 1007),
    (encode_frame(0x3, b"", mask=MASK), 1002),
    (encode_frame(OP_PING, b"p", fin=False, mask=MASK), 1002),
    (encode_frame(OP_CLOSE, b"\x03", mask=MASK), 1002),
    (encode_frame(OP_CLOSE, struct.pack("!H", 1005), mask=MASK), 1002),
    (encode_frame(OP_TEXT, b"a", rsv1=True, mask=MASK), 1002),
])
def test_protocol_faults_close_with_their_code(serve, frame, code):
    server = serve(ws_apps.echo)
    client = RawClient(server)
    client.sock.sendall(frame)
    assert client.recv_close() == code
    assert client.at_eof()
    assert EVENTS.get()["code"] == code
    client.close()


def test_close_handshake_from_the_client(serve):
    server = serve(ws_apps.echo)
    client = RawClient(server)
    client.send(OP_CLOSE, struct.pack("!H", 1000) + b"done")
    assert client.recv_frame() == (OP_CLOSE, struct.pack("!H", 1000))
    assert client.at_eof()  # RFC 6455 §7.1.1: the server closes TCP first
    assert EVENTS.get() == {"type": "websocket.disconnect", "code": 1000, "reason": "done"}


def test_empty_close_is_reported_as_1005_and_answered_empty(serve):
    server = serve(ws_apps.echo)
    client = RawClient(server)
    client.send(OP_CLOSE)
    assert client.recv_frame() == (OP_CLOSE, b"")
    assert EVENTS.get()["code"] == 1005


def test_dropped_connection_is_reported_as_1006(serve):
    server = serve(ws_apps.echo)
    client = RawClient(server)
    client.close()
    assert EVENTS.get()["code"] == 1006


def test_ping_from_a_raw_client(serve):
    server = serve(ws_apps.echo)
    client = RawClient(server)
    client.send(OP_TEXT, b"frag", fin=False)
    client.send(OP_PING, b"mid-message")
    assert client.recv_frame() == (OP_PONG, b"mid-message")
    client.send(0x0, b"ment")
    assert client.recv_frame() == (OP_TEXT, b"fragment")
    client.close()


# -- time: keep-alive pings and the close handshake -------------------------------------------


def test_keepalive_pings_close_a_silent_client(serve):
    server = serve(ws_apps.echo, ws_ping_interval_s=0.2, ws_ping_timeout_s=0.3)
    client = RawClient(server)
    opcode, _ = client.recv_frame()
    assert opcode == OP_PING
    started = time.monotonic()
    assert client.at_eof(timeout=5)
    assert time.monotonic() - started < 2
    assert EVENTS.get()["code"] == 1011


def test_keepalive_pings_keep_a_live_client(serve):
    server = serve(ws_apps.echo, ws_ping_interval_s=0.1, ws_ping_timeout_s=0.2)
    with connect(ws_url(server)) as ws:
        time.sleep(0.8)   # several ping rounds, answered by the client library
        ws.send("still here")
        assert ws.recv() == "still here"


def test_a_client_that_never_answers_our_close_is_dropped(serve, monkeypatch):
    monkeypatch.setattr(websocket_asgi, "CLOSE_TIMEOUT_S", 0.3)
    server = serve(ws_apps.echo)
    client = RawClient(server)
    client.send(OP_TEXT, b"close:1000:bye")
    assert client.recv_close() == 1000
    started = time.monotonic()
    assert client.at_eof(timeout=5)
    assert time.monotonic() - started < 2
    assert EVENTS.get()["code"] == 1006


def test_shutdown_closes_websockets_with_1001(serve):
    server = serve(ws_apps.echo)
    with connect(ws_url(server)) as ws:
        stopper = threading.Thread(target=server.stop)
        started = time.monotonic()
        stopper.start()
        closed = close_received(ws)
    stopper.join(10)
    assert closed[0] == 1001
    assert time.monotonic() - started < 5


# -- backpressure -----------------------------------------------------------------------------


def test_a_slow_client_makes_send_wait(serve):
    # 200 messages of 256 KiB: 50 MB that must not pile up in the server.
    server = serve(ws_apps.flood, write_buffer_high_bytes=256 * 1024)
    client = RawClient(server, path="/?size=262144&count=200")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    time.sleep(0.5)
    progress = 0
    while True:
        try:
            kind, number = EVENTS.get(timeout=0.2)
        except Exception:
            break
        progress = number
        assert kind == "sent"
    # Socket buffers hold a few MB at most: the app is held back.
    assert progress < 100, progress
    received = 0
    while received < 200:
        opcode, payload = client.recv_frame()
        assert opcode == OP_BINARY and len(payload) == 262144
        received += 1
    client.close()


def test_a_fast_client_cannot_flood_an_app_that_does_not_receive(serve):
    app = ws_apps.LazyReceiver()
    server = serve(app)
    client = RawClient(server)
    assert EVENTS.get() == "accepted"
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    frame = encode_frame(OP_BINARY, b"m" * 65536, mask=MASK)
    # Offer 128 MB, far more than the socket buffers hold.
    sent = offer_until_stalled(client.sock, frame, 2000 * len(frame))
    assert sent < 500 * len(frame), sent // len(frame)
    # Once the app receives, everything flows again: finish the frame cut
    # in the middle, then one more message.
    app.begin()
    client.sock.settimeout(10)
    client.sock.sendall(frame[sent % len(frame):] if sent % len(frame) else b"")
    client.send(OP_TEXT, b"last")
    frames = -(-sent // len(frame))
    assert client.recv_frame() == (OP_TEXT, b"got %d" % (frames + 1))
    client.close()


def test_a_ping_flood_from_a_client_that_never_reads_is_held_back(serve):
    server = serve(ws_apps.echo, write_buffer_high_bytes=64 * 1024)
    client = RawClient(server)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    pings = encode_frame(OP_PING, b"p" * 125, mask=MASK) * 64
    # 200 MB of pings would be 200 MB of pongs queued in the server.
    sent = offer_until_stalled(client.sock, pings, 200 * 1024 * 1024)
    assert sent < 50 * 1024 * 1024, sent
    client.close()
    assert EVENTS.get()["code"] == 1006


def test_random_bytes_after_the_handshake_never_hang_or_hurt_the_worker(serve):
    import random

    rng = random.Random(1006)
    server = serve(ws_apps.echo, ws_ping_interval_s=0.2, ws_ping_timeout_s=0.3,
                   ws_max_size_bytes=1 << 16)
    clients = []
    for _ in range(30):
        client = RawClient(server)
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        if rng.random() < 0.5:
            garbage = encode_frame(OP_TEXT, b"valid first", mask=MASK) + garbage
        client.sock.sendall(garbage)
        clients.append(client)
    for client in clients:
        # A fault closes at once; a frame left waiting for bytes that never
        # come is ended by the keep-alive ping, which this client ignores.
        assert client.at_eof(timeout=5)
        client.close()
    with connect(ws_url(server)) as ws:
        ws.send("still serving")
        assert ws.recv() == "still serving"


@pytest.mark.requires_program("openssl")
def test_wss_over_tls(serve, certificate):
    import ssl

    server = serve(ws_apps.echo, ssl_certfile=certificate["cert"], ssl_keyfile=certificate["key"])
    context = ssl.create_default_context(cafile=certificate["cert"])
    host, port = server.address[:2]
    big = os.urandom(1 << 20)

    # The asyncio client: the sync one reads and writes its TLS socket from
    # two threads, and on PyPy a write racing the read of the server's TLS 1.3
    # session tickets is sometimes lost (the request never leaves the client).
    async def main():
        from websockets.asyncio.client import connect as async_connect

        async with async_connect("wss://%s:%d/" % (host, port), ssl=context,
                                 max_size=2 << 20) as ws:
            await ws.send("scope")
            scheme = json.loads(await ws.recv())["scheme"]
            await ws.send(big)
            return scheme, await ws.recv()

    scheme, echoed = run_client(asyncio.wait_for(main(), 30))
    assert scheme == "wss"
    assert echoed == big
