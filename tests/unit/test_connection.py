"""The connection on a fake socket: bytes in, bytes written out, states."""

import asyncio
import socket

import pytest

from selectserver.asgi import make_handler
from selectserver.config import Config
from selectserver.connection import (CLOSED, LARGE_WRITE_BYTES, WriteQueue, IDLE, READING_HEAD, RUNNING, TRANSITIONS,
                                     Connection, ServerState, State)
from selectserver.loop import EVENT_READ, EVENT_WRITE, EventLoop

DATE_SERVER = b"date: Sun, 22 Nov 2026 05:00:00 GMT\r\nserver: selectserver\r\n"


class FakeSocket:
    """Hands out scripted reads; records writes; takes at most ``room`` bytes per send."""

    def __init__(self):
        self._real, self._peer = socket.socketpair()   # a real fd for the selector
        self.reads = []
        self.sends = []
        self.gathers = []
        self.room = None
        self.closed = False

    def recv(self, size):
        if not self.reads:
            raise BlockingIOError
        return self.reads.pop(0)

    def send(self, data):
        data = bytes(data)
        if self.room is not None:
            data = data[:self.room]
        self.sends.append(data)
        return len(data)

    def sendmsg(self, buffers):
        # A gather write: recorded as the pieces it was given, and as one send.
        self.gathers.append(list(buffers))
        return self.send(b"".join(buffers))

    @property
    def sent(self):
        return b"".join(self.sends)

    def fileno(self):
        return -1 if self.closed else self._real.fileno()

    def getsockname(self):
        return ("127.0.0.1", 8000)

    def setsockopt(self, *args):
        pass

    def close(self):
        self.closed = True
        self._real.close()
        self._peer.close()


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": scope["path"][1:3].encode().ljust(2, b"-")})


@pytest.fixture
def make_conn():
    loop = EventLoop()
    asyncio.set_event_loop(loop)
    made = []

    def make(app=hello, **options):
        config = Config(access_log=False, **options)
        state = ServerState(config, make_handler(app, config))
        state.date_server = DATE_SERVER
        sock = FakeSocket()
        conn = Connection(loop, sock, state, ("127.0.0.1", 50000))
        made.append(sock)
        return conn, sock

    def in_loop(function):
        # As in the server, apps start from loop callbacks.
        loop.call_soon(function)
        loop.call_soon(loop.stop)
        loop.run_forever()

    make.in_loop = in_loop
    yield make
    for sock in made:
        if not sock.closed:
            sock.close()
    asyncio.set_event_loop(None)
    loop.close()


def test_one_request_is_one_send_with_head_and_body(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.in_loop(conn.on_readable)
    assert len(sock.sends) == 1
    assert sock.sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sock.sent.endswith(b"\r\n\r\nab")
    assert conn.state is IDLE


def test_pipelined_requests_are_answered_in_order_in_one_send(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"".join(b"GET /%02d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(16)))
    make_conn.in_loop(conn.on_readable)
    assert len(sock.sends) == 1
    bodies = [part[-2:] for part in sock.sent.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"%02d" % i for i in range(16)]
    assert conn.state is IDLE


def test_sockets_ready_together_are_all_read_before_any_answer_is_sent(make_conn):
    log = []
    socks = []
    for name in ("a", "b"):
        conn, sock = make_conn()
        sock.reads.append(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode())
        recv, send = sock.recv, sock.send
        sock.recv = lambda size, recv=recv, name=name: log.append(name + " recv") or recv(size)
        sock.send = lambda data, send=send, name=name: log.append(name + " send") or send(data)
        socks.append((conn, sock))
    loop = socks[0][0].loop
    ready = [(loop._selector.get_key(sock), EVENT_READ) for _, sock in socks]
    make_conn.in_loop(lambda: loop._process_events(ready))
    assert log == ["a recv", "b recv", "a send", "b send"]
    for conn, sock in socks:
        assert sock.sent.endswith(b"\r\n\r\n" + (b"a-" if sock is socks[0][1] else b"b-"))
        assert conn.state is IDLE and conn.write_buffer_bytes == 0
        # Nothing left to send: the selector was not asked for EVENT_WRITE.
        assert loop._selector.get_key(sock).events == EVENT_READ


def one_body_app(body):
    """An app that answers with ``body`` in one message."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return app


def test_a_large_body_leaves_with_its_head_in_one_gather_write_uncopied(make_conn):
    body = b"x" * LARGE_WRITE_BYTES
    conn, sock = make_conn(one_body_app(body))
    sock.reads.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.in_loop(conn.on_readable)
    assert len(sock.sends) == 1 and len(sock.gathers) == 1
    head, sent_body = sock.gathers[0]
    assert bytes(head).startswith(b"HTTP/1.1 200 OK\r\n") and bytes(head).endswith(b"\r\n\r\n")
    assert sent_body.obj is body        # the app's bytes themselves, not a copy
    assert conn.state is IDLE


def test_a_large_body_behind_a_full_socket_waits_in_the_buffer(make_conn):
    body = b"y" * LARGE_WRITE_BYTES
    conn, sock = make_conn(one_body_app(body))
    sock.room = 10
    sock.reads.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.in_loop(conn.on_readable)
    # The kernel took a few bytes of the head; the body waits behind the rest.
    assert len(sock.sent) < 100 and conn.write_buffer_bytes > len(body)
    assert conn.loop._selector.get_key(sock).events & EVENT_WRITE
    sock.room = None
    while conn.write_buffer_bytes:
        conn.on_writable()
    head, _, sent_body = sock.sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and sent_body == body


def test_a_partial_send_keeps_the_rest_and_waits_for_writable(make_conn):
    conn, sock = make_conn()
    sock.room = 10
    sock.reads.append(b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.in_loop(conn.on_readable)
    assert sock.sent == sock.sends[0] and len(sock.sent) == 10
    assert conn.write_buffer_bytes > 0
    assert conn._interest & EVENT_WRITE
    sock.room = None
    conn.on_writable()
    assert sock.sent.endswith(b"\r\n\r\nab")
    assert conn.write_buffer_bytes == 0
    assert conn._interest == EVENT_READ


def test_half_a_head_is_reading_head_and_connection_close_ends_closed(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"GET /ab HTTP/1.1\r\n")
    make_conn.in_loop(conn.on_readable)
    assert conn.state is READING_HEAD
    sock.reads.append(b"Host: x\r\nConnection: close\r\n\r\n")
    make_conn.in_loop(conn.on_readable)
    assert b"connection: close" in sock.sent
    assert conn.state is CLOSED and sock.closed


def test_a_bad_request_is_answered_then_closed(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"GET / HTTP/1.1\r\n\r\n")   # no Host
    make_conn.in_loop(conn.on_readable)
    assert sock.sent.startswith(b"HTTP/1.1 400 ")
    assert conn.state is CLOSED


def test_eof_closes_and_tells_the_app(make_conn):
    seen = []

    async def waits(scope, receive, send):
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])

    conn, sock = make_conn(waits)
    sock.reads.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.in_loop(conn.on_readable)
    assert conn.state is RUNNING
    sock.reads.append(b"")
    make_conn.in_loop(conn.on_readable)
    make_conn.in_loop(lambda: None)
    assert seen == ["http.request", "http.disconnect"]
    assert conn.state is CLOSED


def test_every_state_has_a_row_and_illegal_moves_raise(make_conn):
    assert set(TRANSITIONS) == set(State)
    conn, sock = make_conn()
    with pytest.raises(RuntimeError, match="illegal transition"):
        conn._set_state(State.UPGRADED)   # IDLE -> UPGRADED is not in the table


def test_timeouts_close_idle_and_answer_408_to_a_slow_head(make_conn):
    conn, sock = make_conn()
    conn.on_timeout()
    assert conn.state is CLOSED and sock.sent == b""
    conn, sock = make_conn()
    sock.reads.append(b"GET / HT")
    make_conn.in_loop(conn.on_readable)
    conn.on_timeout()
    assert sock.sent.startswith(b"HTTP/1.1 408 ")
    assert conn.state is CLOSED


class GatherSocket:
    """Takes at most ``room`` bytes per call; records which call was used."""

    def __init__(self, room):
        self.room = room
        self.calls = []
        self.received = b""

    def send(self, data):
        return self._take("send", [data])

    def sendmsg(self, buffers):
        return self._take("sendmsg", buffers)

    def _take(self, call, buffers):
        data = b"".join(bytes(b) for b in buffers)[:self.room]
        self.calls.append((call, len(buffers)))
        self.received += data
        return len(data)


def test_write_queue_keeps_order_across_partial_sends_of_several_pieces():
    big1, big2 = b"A" * LARGE_WRITE_BYTES, b"B" * LARGE_WRITE_BYTES
    queue = WriteQueue(gather=True)
    for piece in (b"head1", big1, b"x", b"y", big2, b"tail"):
        queue.append(piece)
    total = 5 + len(big1) + 2 + len(big2) + 4
    assert queue.size == total
    sock = GatherSocket(room=LARGE_WRITE_BYTES - 3)
    while queue.size:
        queue.send(sock)
    assert sock.received == b"head1" + big1 + b"xy" + big2 + b"tail"
    # Small pieces next to each other were joined: 5 pieces, never 6.
    assert sock.calls[0] == ("sendmsg", 5)


def test_write_queue_copies_what_could_change_and_keeps_bytes_by_reference():
    mutable = bytearray(b"m" * LARGE_WRITE_BYTES)
    queue = WriteQueue(gather=False)
    queue.append(mutable)
    mutable[:1] = b"!"
    big = b"b" * LARGE_WRITE_BYTES
    queue.append(big)
    sock = GatherSocket(room=None)
    queue.send(sock)
    assert sock.received == b"m" * LARGE_WRITE_BYTES    # the copy, not the changed buffer
    assert queue._pieces[0].obj is big
    queue.send(sock)
    assert queue.size == 0 and sock.calls == [("send", 1), ("send", 1)]
