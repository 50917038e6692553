"""The ASGI websocket cycle on a fake connection: no sockets, no sleeps.

Timers are recorded instead of scheduled, and the tests fire them by hand.
"""

import asyncio
import struct

import pytest

from selectserver.asgi import ClientDisconnected
from selectserver.config import Config
from selectserver.http11.events import Request
from selectserver.http11.writer import ResponseWriter
from selectserver.loop import EventLoop
from selectserver.websocket import asgi as websocket_asgi
from selectserver.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
)

MASK = b"\x0a\x0b\x0c\x0d"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


class TimerLoop(EventLoop):
    """A loop whose call_later only records: the test decides when time passes."""

    def __init__(self):
        super().__init__()
        self.timers = []

    def call_later(self, delay, callback, *args, context=None):
        handle = asyncio.TimerHandle(self.time() + delay, callback, args, self, context)
        self.timers.append((delay, handle))
        return handle

    def fire(self, callback_name):
        """Run the pending timers whose callback has this name; return how many."""
        fired = 0
        for delay, handle in list(self.timers):
            if not handle.cancelled() and handle._callback.__name__ == callback_name:
                self.timers.remove((delay, handle))
                handle._run()
                fired += 1
        return fired

    def pending(self):
        return sorted(h._callback.__name__ for _, h in self.timers if not h.cancelled())

    def spin(self):
        for _ in range(5):
            self.run_until_complete(asyncio.sleep(0))


class FakeServer:
    def __init__(self, **options):
        self.config = Config(**options)
        self.write_high_bytes = 1000
        self.write_low_bytes = 250
        self.date_server = b""
        self.on_response = None


class FakeConnection:
    """What the cycle uses of a Connection, recording what it is asked to do."""

    def __init__(self, loop, leftover=b"", **options):
        self.loop = loop
        self.server = FakeServer(**options)
        self.client = ("127.0.0.1", 5000)
        self.cycle = None
        self.request = None
        self.writer = None
        self.started_at = loop.time()
        self.state = "running"
        self.written = []
        self.buffered = 0          # bytes "not yet sent" while stalled
        self.stalled = False
        self.reading = []
        self.responses = []
        self._leftover = leftover

    def continue_serving(self):
        pass

    def upgrade(self, protocol):
        self.state = "upgraded"
        self.cycle = protocol
        return self._leftover

    def write(self, data):
        if self.state == "closed":
            raise AssertionError("write after close")
        self.written.append(bytes(data))
        if self.stalled:
            self.buffered += len(data)

    @property
    def write_buffer_bytes(self):
        return self.buffered

    def drain(self):
        self.buffered = 0
        if self.cycle is not None:
            self.cycle.on_drained()

    def set_reading(self, enabled):
        self.reading.append(enabled)

    def close_after_flush(self):
        self.close()

    def close(self):
        if self.state != "closed":
            self.state = "closed"
            cycle, self.cycle = self.cycle, None
            if cycle is not None:
                cycle.on_disconnect()

    abort = close

    def respond(self, status, headers, body=b"", end=False):
        self.responses.append((status, list(headers), body, end))
        if end:
            self.cycle = None
        return False

    def send_body(self, body, end=False):
        self.responses.append(("body", body, end))
        if end:
            self.cycle = None
        return False

    def respond_error(self, status, detail=""):
        self.responses.append((status, "error"))
        self.cycle = None
        self.state = "closed"

    # -- what the test reads --------------------------------------------------------

    def frames(self):
        """(opcode, payload) of the frames written after the 101 head."""
        data = b"".join(self.written)
        if data.startswith(b"HTTP/1.1 101"):
            data = data.partition(b"\r\n\r\n")[2]
        frames = []
        while data:
            opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
            if length == 126:
                length, offset = struct.unpack("!H", data[2:4])[0], 4
            elif length == 127:
                length, offset = struct.unpack("!Q", data[2:10])[0], 10
            frames.append((opcode, data[offset:offset + length]))
            data = data[offset + length:]
        return frames


@pytest.fixture
def loop():
    loop = TimerLoop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def handshake_request():
    return Request(b"GET", b"/ws", "1.1", [
        (b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY), (b"sec-websocket-version", b"13")])


def serve(loop, app, conn, request):
    """Call the hook from a loop callback, as the connection does; its answer."""
    taken = []
    scope = {"type": "http", "scheme": "http", "method": "GET", "path": "/ws"}
    loop.call_soon(lambda: taken.append(websocket_asgi.serve(app, conn, request, scope)))
    loop.spin()
    return taken[0]


def start(loop, app, leftover=b"", stalled=False, **options):
    options.setdefault("ws_ping_interval_s", None)
    conn = FakeConnection(loop, leftover, **options)
    conn.stalled = stalled
    request = conn.request = handshake_request()
    conn.writer = ResponseWriter(request)
    assert serve(loop, app, conn, request)
    return conn


def client_frame(opcode, payload=b"", fin=True):
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


class Script:
    """An app that accepts, then records every message it receives."""

    def __init__(self, receive_after_accept=True):
        self.received = []
        self.receive_after_accept = receive_after_accept
        self.go = None
        self.send = None

    async def __call__(self, scope, receive, send):
        self.send = send
        self.go = asyncio.get_running_loop().create_future()
        assert await receive() == {"type": "websocket.connect"}
        await send({"type": "websocket.accept"})
        if not self.receive_after_accept:
            await self.go
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "websocket.disconnect":
                return


def test_accept_writes_101_and_hands_over_leftover_bytes(loop):
    app = Script()
    conn = start(loop, app, leftover=client_frame(OP_TEXT, b"early"))
    assert conn.written[0].startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in conn.written[0]
    assert conn.state == "upgraded"
    assert app.received == [{"type": "websocket.receive", "text": "early"}]


def test_a_ping_is_answered_and_a_close_echoed(loop):
    app = Script()
    conn = start(loop, app)
    conn.cycle.on_data(client_frame(OP_PING, b"hi") + client_frame(OP_CLOSE, b"\x0f\xa1bye"))
    loop.spin()
    assert conn.frames() == [(OP_PONG, b"hi"), (OP_CLOSE, b"\x0f\xa1")]
    assert conn.state == "closed"
    assert app.received == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye"}]


def test_the_socket_stops_being_read_while_the_app_is_behind(loop):
    app = Script(receive_after_accept=False)
    conn = start(loop, app)
    cycle = conn.cycle
    data = b"".join(client_frame(OP_BINARY, b"%d" % i) for i in range(40))
    cycle.on_data(data)
    assert conn.reading == [False]
    assert len(cycle._inbox) == websocket_asgi.MAX_QUEUE
    assert cycle.parser.buffered_bytes > 0          # the rest waits, unparsed
    app.go.set_result(None)
    loop.spin()
    # The app took everything, reading resumed once the queue ran low.
    assert [m["bytes"] for m in app.received] == [b"%d" % i for i in range(40)]
    assert conn.reading[-1] is True
    assert cycle.reading


def test_send_waits_while_the_write_buffer_is_full(loop):
    progress = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(3):
            await send({"type": "websocket.send", "bytes": b"x" * 1100})
            progress.append(i)

    conn = start(loop, app, stalled=True)
    # Each message passes the 1000-byte mark: each send waits for a drain.
    for expected in ([], [0], [0, 1], [0, 1, 2]):
        assert progress == expected
        conn.drain()
        loop.spin()


def test_keepalive_ping_and_its_timeout(loop):
    app = Script()
    conn = start(loop, app, ws_ping_interval_s=20.0, ws_ping_timeout_s=5.0)
    assert loop.pending() == ["_on_ping_due"]
    loop.fire("_on_ping_due")
    assert conn.frames()[-1] == (OP_PING, b"")
    assert loop.pending() == ["_on_ping_due", "_on_pong_timeout"]
    conn.cycle.on_data(client_frame(OP_PONG, b""))
    assert loop.pending() == ["_on_ping_due"]     # the pong cancelled the timeout
    loop.fire("_on_ping_due")
    loop.fire("_on_pong_timeout")
    loop.spin()
    assert conn.state == "closed"
    assert app.received == [{"type": "websocket.disconnect", "code": 1011,
                             "reason": "keepalive ping timeout"}]
    assert loop.pending() == []


def test_our_close_waits_for_the_client_at_most_a_timeout(loop):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4004, "reason": "enough"})
        app.disconnect = await receive()

    conn = start(loop, app)
    assert conn.frames() == [(OP_CLOSE, b"\x0f\xa4enough")]
    assert conn.state == "upgraded" and loop.pending() == ["_on_close_timeout"]
    loop.fire("_on_close_timeout")
    loop.spin()
    assert conn.state == "closed"
    assert app.disconnect == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def test_the_clients_answer_ends_our_close(loop):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})
        app.disconnect = await receive()
        # Recorded for the test to check: an assertion failing in here
        # would only reach the server's error log.
        try:
            await send({"type": "websocket.send", "text": "late"})
        except ClientDisconnected:
            app.late_send = "refused"
        else:
            app.late_send = "sent"

    conn = start(loop, app)
    conn.cycle.on_data(client_frame(OP_TEXT, b"dropped") + client_frame(OP_CLOSE, b"\x03\xe8"))
    loop.spin()
    assert conn.frames() == [(OP_CLOSE, b"\x03\xe8")]    # no second Close
    assert conn.state == "closed" and loop.pending() == []
    assert app.disconnect == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
    assert app.late_send == "refused"


def test_shutdown_sends_1001(loop):
    app = Script()
    conn = start(loop, app)
    conn.cycle.on_shutdown()
    assert conn.frames() == [(OP_CLOSE, b"\x03\xe9server shutting down")]


def test_protocol_error_fails_the_connection(loop):
    app = Script()
    conn = start(loop, app)
    conn.cycle.on_data(encode_frame(OP_TEXT, b"not masked"))
    loop.spin()
    assert conn.frames()[0][0] == OP_CLOSE and conn.frames()[0][1][:2] == b"\x03\xea"
    assert conn.state == "closed"
    assert app.received[0]["code"] == 1002


def test_close_before_accept_is_403(loop):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.close"})

    conn = start(loop, app)
    assert conn.responses == [(403, "error")]


def test_denial_response(loop):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 404, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"pe"})
        app.after = await receive()

    conn = start(loop, app)
    assert conn.responses == [(404, [], b"no", False), ("body", b"pe", True)]
    assert app.after["type"] == "websocket.disconnect"


@pytest.mark.parametrize("messages, error", [
    ([{"type": "websocket.send", "text": "x"}], RuntimeError),
    ([{"type": "websocket.accept"}, {"type": "websocket.accept"}], RuntimeError),
    ([{"type": "websocket.accept", "subprotocol": "two words"}], RuntimeError),
    ([{"type": "websocket.accept", "headers": [(b"bad name", b"x")]}], RuntimeError),
    ([{"type": "websocket.accept"}, {"type": "websocket.send"}], RuntimeError),
    ([{"type": "websocket.accept"}, {"type": "websocket.http.response.start", "status": 200}],
     RuntimeError),
    ([{"type": "websocket.nonsense"}], RuntimeError),
    ([{"type": "websocket.accept"}, {"type": "websocket.send", "text": b"bytes"}], TypeError),
    ([{"type": "websocket.accept"}, {"type": "websocket.send", "bytes": 5}], TypeError),
    ([{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1005}], RuntimeError),
    ([{"type": "websocket.accept"}, {"type": "websocket.close", "code": 5000}], RuntimeError),
])
@pytest.mark.expect_errors(r"^Exception in ASGI application \(websocket /ws\)")
def test_misuse_raises_in_the_app(loop, messages, error):
    caught = []

    async def app(scope, receive, send):
        await receive()
        try:
            for message in messages:
                await send(message)
        except Exception as exc:
            caught.append(exc)
            raise

    start(loop, app)
    assert len(caught) == 1 and isinstance(caught[0], error), caught


@pytest.mark.expect_errors(r"^Exception in ASGI application \(websocket /ws\)")
def test_app_exception_after_accept_closes_with_1011(loop, caplog):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        raise ValueError("broken")

    conn = start(loop, app)
    assert conn.frames() == [(OP_CLOSE, b"\x03\xf3")]
    assert "Exception in ASGI application" in caplog.text


def test_client_disconnected_is_not_logged(loop, caplog):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.send", "text": "too late"})

    conn = start(loop, app)
    conn.close()
    loop.spin()
    assert "Exception" not in caplog.text


def test_a_handshake_error_is_answered_and_not_an_app_call(loop):
    conn = FakeConnection(loop)
    request = Request(b"GET", b"/", "1.1", [(b"host", b"x"), (b"upgrade", b"websocket"),
                                            (b"connection", b"upgrade")])
    conn.writer = ResponseWriter(request)
    called = []
    assert serve(loop, lambda *a: called.append(a), conn, request)
    assert not called
    status, headers, body, end = conn.responses[0]
    assert status == 426 and (b"sec-websocket-version", b"13") in headers and end


def test_requests_without_upgrade_are_not_taken(loop):
    conn = FakeConnection(loop)
    request = Request(b"GET", b"/", "1.1", [(b"host", b"x")])
    assert not serve(loop, None, conn, request)
    assert websocket_asgi.upgrade_handler(Config(ws="none")) is None
    assert websocket_asgi.upgrade_handler(Config()) is websocket_asgi.serve


def test_a_ping_flood_from_a_client_that_does_not_read_stops_the_reading(loop):
    app = Script()
    conn = start(loop, app, stalled=True)
    conn.drain()                                    # the 101 head went out
    pings = client_frame(OP_PING, b"p" * 100) * 50  # 50 pongs would be 5 KB
    conn.cycle.on_data(pings)
    pongs = [f for f in conn.frames() if f[0] == OP_PONG]
    assert conn.reading == [False]
    assert 0 < len(pongs) < 50 and conn.buffered <= 1000 + 102
    assert conn.cycle.parser.buffered_bytes > 0     # the rest waits, unparsed
    # Each drain lets some more pings be answered, until all are.
    for _ in range(50):
        if conn.cycle.reading:
            break
        conn.drain()
    assert conn.reading[-1] is True
    assert len([f for f in conn.frames() if f[0] == OP_PONG]) == 50
