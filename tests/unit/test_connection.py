"""The connection on a fake socket: bytes in, bytes written out, states."""

import asyncio
import socket

import pytest

from selectserver.asgi import make_handler
from selectserver.config import Config
from selectserver.connection import (CLOSED, CLOSING, GRACE, IDLE, LARGE_WRITE_BYTES, LINGERING, READING_HEAD,
                                     READING_LAST_HEAD, RUNNING, RUNNING_LAST, TRANSITIONS, Connection, Event,
                                     ServerState, State, WriteQueue)
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
        self.shut_down = None

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

    def shutdown(self, how):
        self.shut_down = how

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

    def read(conn):
        # As the loop does it: one batch of events, then the batch's flush.
        key = loop._selector.get_key(conn.sock)
        in_loop(lambda: loop._process_events([(key, EVENT_READ)]))

    make.in_loop = in_loop
    make.read = read
    yield make
    for sock in made:
        if not sock.closed:
            sock.close()
    asyncio.set_event_loop(None)
    loop.close()


def test_one_request_is_one_send_with_head_and_body(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert len(sock.sends) == 1
    assert sock.sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sock.sent.endswith(b"\r\n\r\nab")
    assert conn.state is IDLE


def test_pipelined_requests_are_answered_in_order_in_one_send(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"".join(b"GET /%02d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(16)))
    make_conn.read(conn)
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
    make_conn.read(conn)
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
    make_conn.read(conn)
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
    make_conn.read(conn)
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
    make_conn.read(conn)
    assert conn.state is READING_HEAD
    sock.reads.append(b"Host: x\r\nConnection: close\r\n\r\n")
    make_conn.read(conn)
    assert b"connection: close" in sock.sent
    assert conn.state is CLOSED and sock.closed


def test_a_bad_request_is_answered_then_closed_lingering(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"GET / HTTP/1.1\r\n\r\n")   # no Host
    make_conn.read(conn)
    assert sock.sent.startswith(b"HTTP/1.1 400 ")
    # The client may still be sending: FIN, not a reset that could destroy the 400.
    assert conn.state is LINGERING and sock.shut_down == socket.SHUT_WR


def test_eof_closes_and_tells_the_app(make_conn):
    seen = []

    async def waits(scope, receive, send):
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])

    conn, sock = make_conn(waits)
    sock.reads.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert conn.state is RUNNING
    sock.reads.append(b"")
    make_conn.read(conn)
    make_conn.in_loop(lambda: None)
    assert seen == ["http.request", "http.disconnect"]
    assert conn.state is CLOSED


def test_every_transition_of_the_table_is_allowed_and_traced(make_conn):
    conn, sock = make_conn()
    seen = []
    conn.server.trace = lambda *args: seen.append(args)
    for (state, event), new in TRANSITIONS.items():
        conn.state = state            # put there by hand: each row on its own
        assert conn._transition(event) is new
        assert seen[-1] == (conn, state, event, new)
    conn.state = IDLE


def test_a_move_not_in_the_table_raises(make_conn):
    conn, sock = make_conn()
    # Every state but CLOSED can close; nothing leaves CLOSED.
    assert {state for state, event in TRANSITIONS if event is Event.CLOSE} == set(State) - {CLOSED}
    for state, event in ((IDLE, Event.UPGRADE), (CLOSED, Event.CLOSE), (RUNNING_LAST, Event.STOP),
                         (LINGERING, Event.HEAD)):
        conn.state = state
        with pytest.raises(RuntimeError, match="illegal transition"):
            conn._transition(event)
        assert conn.state is state
    conn.state = IDLE


def test_timeouts_linger_after_idle_and_answer_408_to_a_slow_head(make_conn):
    conn, sock = make_conn()
    conn.on_timeout()
    # Keep-alive over: FIN first, then what the client still sends is dropped.
    assert conn.state is LINGERING and sock.shut_down == socket.SHUT_WR and sock.sent == b""
    sock.reads.append(b"GET / HTTP/1.1\r\n")
    make_conn.read(conn)
    assert conn.state is LINGERING and sock.sent == b""
    sock.reads.append(b"")
    make_conn.read(conn)
    assert conn.state is CLOSED
    conn, sock = make_conn()
    sock.reads.append(b"GET / HT")
    make_conn.read(conn)
    conn.on_timeout()
    assert sock.sent.startswith(b"HTTP/1.1 408 ")
    assert conn.state is LINGERING
    conn.on_timeout()
    assert conn.state is CLOSED and sock.closed


def test_a_client_asking_to_close_is_closed_without_lingering(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"GET /ab HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    make_conn.read(conn)
    assert conn.state is CLOSED and sock.shut_down is None


def body_app(seen):
    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        if message["type"] == "http.request":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
    return app


def test_a_request_body_has_a_deadline_moved_by_what_arrives(make_conn):
    seen = []
    conn, sock = make_conn(body_app(seen), timeout_request_body_s=20, request_body_min_rate_bytes=500)
    sock.reads.append(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
    make_conn.read(conn)
    assert conn.state is RUNNING
    first = conn.deadline
    sock.reads.append(b"x" * 1000)
    make_conn.read(conn)
    # 1000 bytes at a minimum rate of 500 bytes/s earn two more seconds.
    assert conn.deadline == pytest.approx(first + 2.0)
    conn.on_timeout()
    make_conn.in_loop(lambda: None)
    assert sock.sent.startswith(b"HTTP/1.1 408 ") and b"connection: close" in sock.sent
    assert seen[-1] == {"type": "http.disconnect"}
    assert conn.state is LINGERING


def test_a_body_that_is_all_here_or_waits_for_the_app_does_not_time_out(make_conn):
    async def never_reads(scope, receive, send):
        await asyncio.sleep(3600)

    conn, sock = make_conn(never_reads)
    sock.reads.append(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    make_conn.read(conn)
    conn.on_timeout()
    assert conn.state is RUNNING and conn.deadline == 0.0 and sock.sent == b""
    conn, sock = make_conn(never_reads, read_buffer_high_bytes=4)
    sock.reads.append(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
    make_conn.read(conn)
    assert conn.deadline
    sock.reads.append(b"x" * 8)     # above the high-water mark: we stopped reading
    make_conn.read(conn)
    conn.on_timeout()
    assert conn.state is RUNNING and sock.sent == b"" and conn.deadline


def test_a_request_read_after_the_worker_stopped_taking_work_is_the_last(make_conn):
    conn, sock = make_conn()
    conn.server.draining = True      # before this connection's shutdown() came
    sock.reads.append(b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert b"connection: close" in sock.sent and conn.state is LINGERING


def test_shutdown_serves_a_request_already_here_with_connection_close(make_conn):
    started = []

    async def waits(scope, receive, send):
        started.append(asyncio.get_running_loop().create_future())
        await started[0]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    conn, sock = make_conn(waits)
    sock.reads.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    conn.shutdown()
    assert conn.state is RUNNING_LAST
    conn.shutdown()                  # again: nothing changes
    make_conn.in_loop(lambda: started[0].set_result(None))
    make_conn.in_loop(lambda: None)
    assert sock.sent.count(b"HTTP/1.1 200") == 1 and b"connection: close\r\n" in sock.sent
    # The pipelined request behind it is not read: FIN, then drop what comes.
    assert conn.state is LINGERING and sock.shut_down == socket.SHUT_WR


def test_shutdown_gives_an_idle_connection_a_grace_window_for_one_last_request(make_conn):
    conn, sock = make_conn()
    sock.reads.append(b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    conn.shutdown()
    assert conn.state is GRACE and conn.deadline
    sock.reads.append(b"GET /cd HTTP/1.1\r\n")
    make_conn.read(conn)
    assert conn.state is READING_LAST_HEAD
    sock.reads.append(b"Host: x\r\n\r\n")
    make_conn.read(conn)
    last = sock.sent.split(b"HTTP/1.1 200 OK")[-1]
    assert last.endswith(b"cd") and b"connection: close" in last
    assert conn.state is LINGERING
    # Nothing in the window: a lingering close.
    conn, sock = make_conn()
    conn.shutdown()
    conn.on_timeout()
    assert conn.state is LINGERING and sock.shut_down == socket.SHUT_WR


def test_a_response_ended_in_a_later_step_serves_the_next_request_without_a_loop_turn(make_conn):
    gate = []

    async def later(scope, receive, send):
        if scope["path"] == "/a":
            gate.append(asyncio.get_running_loop().create_future())
            await gate[0]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
        await send({"type": "http.response.body", "body": scope["path"][1:].encode()})

    conn, sock = make_conn(later)
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert conn.state is RUNNING and sock.sent == b""
    loop = conn.loop
    # The future's callback resumes /a; its after-step starts /b at once.
    make_conn.in_loop(lambda: gate[0].set_result(None))
    assert len(loop._ready) == 1      # the resumption of /a, and nothing else
    make_conn.in_loop(loop._ready.popleft()._run)
    assert not loop._ready
    assert sock.sent.endswith(b"\r\n\r\nb") and sock.sent.count(b"200 OK") == 2
    assert conn.state is IDLE


def test_a_client_leaving_mid_response_is_logged_with_what_was_sent(make_conn):
    logged = []

    async def streams(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await asyncio.get_running_loop().create_future()

    conn, sock = make_conn(streams)
    conn.server.on_response = lambda conn, request, writer, duration: logged.append(
        (writer.status, writer.bytes_sent))
    sock.reads.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    sock.reads.append(b"")
    make_conn.read(conn)
    assert logged == [(200, 4)] and conn.state is CLOSED


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
    assert queue.pieces[0].obj is big
    queue.send(sock)
    assert queue.size == 0 and sock.calls == [("send", 1), ("send", 1)]


def test_lingering_drops_at_most_linger_bytes_then_closes(make_conn):
    from selectserver.connection import LINGER_BYTES, RECV_BYTES
    conn, sock = make_conn()
    conn.on_timeout()
    assert conn.state is LINGERING
    for _ in range(LINGER_BYTES // RECV_BYTES + 1):
        sock.reads.append(b"x" * RECV_BYTES)
    while conn.state is LINGERING and sock.reads:
        make_conn.read(conn)
    assert conn.state is CLOSED


def test_a_cycle_answering_from_a_loop_callback_goes_on_to_the_next_request_at_once(make_conn):
    from selectserver.connection import Cycle

    class LoopCycle(Cycle):
        """Answers later, from a loop callback (as the WSGI bridge does)."""

    served = []

    def handler(conn, request):
        conn.cycle = LoopCycle()
        served.append(request.target)
        conn.loop.call_soon(conn.respond, 200, [(b"content-length", b"2")], b"ok", True)

    conn, sock = make_conn()
    conn.server.handler = handler
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert served == [b"/a"]
    make_conn.in_loop(lambda: None)   # /a answered; /b starts in the same callback
    assert served == [b"/a", b"/b"]
    make_conn.in_loop(lambda: None)
    assert sock.sent.count(b"200 OK") == 2 and conn.state is IDLE


def answering_later(served, body=b"ok"):
    """A handler whose cycle answers from a loop callback, as the WSGI bridge
    does (the app runs elsewhere)."""
    from selectserver.connection import Cycle

    class LoopCycle(Cycle):
        pass

    def handler(conn, request):
        conn.cycle = LoopCycle()
        served.append(request.target)
        conn.loop.call_soon(conn.respond, 200, [(b"content-length", b"%d" % len(body))], body, True)
    return handler


def assert_interest_settled(conn):
    """The selector already watches for what _update_interest() wants: a call
    the connection skipped (its "interest is already right" shortcuts) would
    have changed nothing."""
    interest = conn._interest
    conn._update_interest()
    assert conn._interest == interest


def test_an_answer_from_a_loop_callback_with_nothing_left_skips_nothing_it_needs(make_conn):
    served = []
    conn, sock = make_conn()
    conn.server.handler = answering_later(served)
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert conn.state is RUNNING and conn._interest == EVENT_READ
    assert_interest_settled(conn)
    make_conn.in_loop(lambda: None)
    assert sock.sent.endswith(b"ok") and conn.state is IDLE and conn._interest == EVENT_READ
    assert_interest_settled(conn)


def test_an_answer_from_a_loop_callback_goes_on_with_part_of_the_next_head(make_conn):
    served = []
    conn, sock = make_conn()
    conn.server.handler = answering_later(served)
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT")
    make_conn.read(conn)
    make_conn.in_loop(lambda: None)
    # The bytes of /b are seen: its head deadline runs, not keep-alive's.
    assert served == [b"/a"] and conn.state is READING_HEAD
    assert_interest_settled(conn)


def test_an_answer_from_a_loop_callback_the_client_does_not_read_stops_reading(make_conn):
    served = []
    conn, sock = make_conn(write_buffer_high_bytes=16)
    conn.server.handler = answering_later(served, b"x" * 64)
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    sock.room = 10
    make_conn.in_loop(lambda: None)
    # Above the write buffer's mark between requests: no next request is read.
    assert conn.state is IDLE and conn._interest == EVENT_WRITE
    assert_interest_settled(conn)
    sock.room = None
    conn.on_writable()
    assert sock.sent.endswith(b"x" * 64) and conn._interest == EVENT_READ


def test_an_answer_queued_above_the_mark_in_a_batch_stops_reading_at_once(make_conn):
    from selectserver.connection import Cycle

    seen = []

    def handler(conn, request):
        # Answered inside the batch by a cycle of loop callbacks: queued.
        conn.cycle = Cycle()
        conn.respond(200, [(b"content-length", b"64")], b"x" * 64, True)
        seen.append((conn.state, conn._interest))

    conn, sock = make_conn(write_buffer_high_bytes=16)
    conn.server.handler = handler
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.room = 10
    make_conn.read(conn)
    assert seen == [(IDLE, 0)]   # before the batch's flush
    assert conn._interest == EVENT_WRITE and sock.sent == sock.sends[0]
    assert_interest_settled(conn)


def test_a_body_above_the_read_mark_pauses_reading_until_the_answer_skips_it(make_conn):
    served = []
    conn, sock = make_conn(read_buffer_high_bytes=16)
    conn.server.handler = answering_later(served)
    sock.reads.append(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n" + b"b" * 32)
    make_conn.read(conn)
    # The app runs elsewhere and has not read the body: read no more.
    assert conn.state is RUNNING and conn._interest == 0
    assert_interest_settled(conn)
    make_conn.in_loop(lambda: None)
    # The unread body, all here, is skipped: reading resumes for the next request.
    assert conn.state is IDLE and conn._interest == EVENT_READ
    assert_interest_settled(conn)


def taking_whole_bodies(taken, now=True, interests=None):
    """A handler that takes the whole body with receive_whole_body(), at
    once (as the WSGI handler does) or later from a loop callback, and
    answers with it; ``interests`` gets the interest just after each taking."""
    from selectserver.connection import Cycle

    def take_and_answer(conn):
        body = conn.receive_whole_body()
        taken.append(body)
        if interests is not None:
            interests.append(conn._interest)
        if body is not None:
            conn.respond(200, [(b"content-length", b"%d" % len(body))], body, True)

    def handler(conn, request):
        conn.cycle = Cycle()
        if now:
            take_and_answer(conn)
        else:
            conn.loop.call_soon(take_and_answer, conn)
    return handler


def served_taking_whole_bodies(make_conn, received):
    """A connection whose handler takes whole bodies, after it read ``received``;
    returns what the handler took, the connection and its socket."""
    taken = []
    conn, sock = make_conn()
    conn.server.handler = taking_whole_bodies(taken)
    sock.reads.append(received)
    make_conn.read(conn)
    return taken, conn, sock


def test_a_whole_body_is_received_in_one_piece_and_the_next_request_follows(make_conn):
    post = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    taken, conn, sock = served_taking_whole_bodies(make_conn, post + b"hello" + post + b"world")
    assert taken == [b"hello", b"world"]
    assert sock.sent.count(b"200 OK") == 2 and sock.sent.endswith(b"world")
    assert conn.state is IDLE and conn._interest == EVENT_READ


def test_a_whole_body_answers_100_continue_as_receive_body_would(make_conn):
    head = b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    taken, conn, sock = served_taking_whole_bodies(make_conn, head + b"hello")
    assert taken == [b"hello"]
    assert sock.sent.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert sock.sent.count(b"100 Continue") == 1 and conn.state is IDLE


def test_a_body_not_all_here_is_not_taken_and_nothing_is_answered(make_conn):
    head = b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    taken, conn, sock = served_taking_whole_bodies(make_conn, head + b"hel")
    # Left to receive_body(), which answers 100 Continue when the app asks.
    assert taken == [None] and sock.sent == b"" and conn.state is RUNNING
    event = conn.receive_body()
    assert event.data == b"hel" and sock.sent == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_a_whole_body_taken_resumes_reading(make_conn):
    taken, interests = [], []
    conn, sock = make_conn(read_buffer_high_bytes=16)
    conn.server.handler = taking_whole_bodies(taken, now=False, interests=interests)
    sock.reads.append(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n" + b"b" * 32)
    key = conn.loop._selector.get_key(conn.sock)
    conn.loop._process_events([(key, EVENT_READ)])   # read; the callback is still to run
    assert conn.state is RUNNING and conn._interest == 0
    make_conn.in_loop(lambda: None)
    assert taken == [b"b" * 32] and interests == [EVENT_READ]
    assert conn.state is IDLE and sock.sent.endswith(b"b" * 32)


def test_shutdown_closes_a_handshake_and_asks_an_upgraded_protocol_to_end(make_conn):
    from selectserver.connection import HANDSHAKE, UPGRADED, Protocol

    conn, sock = make_conn()
    conn.state = HANDSHAKE
    conn.shutdown()
    assert conn.state is CLOSED

    class Ending(Protocol):
        asked = False

        def on_shutdown(self):
            self.asked = True

    conn, sock = make_conn()
    conn.state, conn.cycle = UPGRADED, Ending()
    conn.shutdown()
    assert conn.cycle.asked and conn.state is UPGRADED


# -- refusals (--limit-concurrency, a full WSGI queue) and server-made errors -------


def never_called(scope, receive, send):
    raise AssertionError("a refused request reached the app")


def full_conn(make_conn, app=never_called):
    """A connection whose server has its one --limit-concurrency slot taken,
    and the access log's calls."""
    conn, sock = make_conn(app, limit_concurrency=1)
    conn.server.in_flight.add(object())
    logged = []
    conn.server.on_response = lambda conn, request, writer, duration_s: logged.append(
        (request.target, writer.status, writer.bytes_sent))
    return conn, sock, logged


def test_a_refusal_is_one_send_then_a_close_without_lingering(make_conn):
    conn, sock, logged = full_conn(make_conn)
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert len(sock.sends) == 1
    head, _, body = sock.sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 1\r\n" in head + b"\r\n" and b"\r\nconnection: close" in head
    # Everything the client sent is read and it had no body: nothing can
    # reach a closed socket but a pipelined request (see refuse()).
    assert conn.state is CLOSED and sock.closed and sock.shut_down is None
    assert logged == [(b"/a", 503, len(body))]
    assert len(conn.server.in_flight) == 1


def test_a_refusal_with_bytes_left_unread_lingers(make_conn):
    conn, sock, logged = full_conn(make_conn)
    # A pipelined request behind it, then a body: both unread when refused.
    for request in (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"):
        if conn.state is not IDLE:
            conn, sock = make_conn(never_called, limit_concurrency=1)
            conn.server.in_flight.add(object())
            conn.server.on_response = lambda conn, request, writer, duration_s: logged.append(
                (request.target, writer.status, writer.bytes_sent))
        sock.reads.append(request)
        make_conn.read(conn)
        assert sock.sent.startswith(b"HTTP/1.1 503 ") and sock.sent.count(b"HTTP/1.1") == 1
        assert conn.state is LINGERING and sock.shut_down == socket.SHUT_WR
    assert [status for _, status, _ in logged] == [503, 503]


def test_a_refusal_the_kernel_takes_in_part_is_finished_by_the_lingering_close(make_conn):
    conn, sock, logged = full_conn(make_conn)
    sock.room = 10
    sock.reads.append(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert conn.state is CLOSING and logged[0][1] == 503
    sock.room = None
    conn.on_writable()
    assert sock.sent.startswith(b"HTTP/1.1 503 ") and sock.sent.endswith(b"later\n")
    assert conn.state is LINGERING


@pytest.mark.expect_errors(r"Exception in ASGI application \(GET /e\)")
def test_a_server_made_error_has_its_access_line_and_frees_its_slot_at_once(make_conn):
    def fails(scope, receive, send):
        raise RuntimeError("boom")   # before the coroutine: the handler answers 500

    conn, sock, logged = full_conn(make_conn, fails)
    conn.server.in_flight.clear()
    sock.reads.append(b"GET /e HTTP/1.1\r\nHost: x\r\n\r\n")
    make_conn.read(conn)
    assert sock.sent.startswith(b"HTTP/1.1 500 ")
    assert logged == [(b"/e", 500, len(sock.sent.partition(b"\r\n\r\n")[2]))]
    # The request is over: its slot is free while the close lingers.
    assert conn.state is LINGERING and not conn.server.in_flight


def test_error_pages_are_built_once_per_date(make_conn):
    conn, sock = make_conn()
    server = conn.server
    page, body_bytes = server.error_page(503, "busy", b"retry-after: 1\r\n")
    assert server.error_page(503, "busy", b"retry-after: 1\r\n")[0] is page
    assert page.endswith(b"\r\n\r\n503 Service Unavailable\nbusy\n") and body_bytes == 29
    server.date_server = DATE_SERVER.replace(b"05:00:00", b"05:00:01")
    later, _ = server.error_page(503, "busy", b"retry-after: 1\r\n")
    assert later == page.replace(b"05:00:00", b"05:00:01")


def test_a_new_connection_reads_at_once_and_registers_only_if_it_stays(make_conn):
    conn, sock = make_conn()
    loop = conn.loop
    state = conn.server
    # Asks to close: answered and closed, never on the selector.
    sock = FakeSocket()
    sock.reads.append(b"GET /ab HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    closing = Connection(loop, sock, state, ("127.0.0.1", 50001), read_now=True)
    assert closing.state is CLOSED and sock.sent.endswith(b"ab") and sock.closed
    # Kept alive: answered, then registered for the next request.
    sock = FakeSocket()
    sock.reads.append(b"GET /cd HTTP/1.1\r\nHost: x\r\n\r\n")
    kept = Connection(loop, sock, state, ("127.0.0.1", 50002), read_now=True)
    assert kept.state is IDLE and sock.sent.endswith(b"cd")
    assert loop._selector.get_key(sock).events == EVENT_READ
    # Nothing there yet: registered, as without read_now.
    sock = FakeSocket()
    waiting = Connection(loop, sock, state, ("127.0.0.1", 50003), read_now=True)
    assert waiting.state is IDLE and loop._selector.get_key(sock).events == EVENT_READ
    for other in (kept, waiting):
        other.close()


def test_a_bug_met_in_the_first_read_drops_that_connection_only(make_conn):
    conn, sock = make_conn()
    loop = conn.loop
    reported = []
    loop.set_exception_handler(lambda loop, context: reported.append(context["exception"]))

    def broken_handler(conn, request):
        raise RuntimeError("our bug")

    conn.server.handler = broken_handler
    sock = FakeSocket()
    sock.reads.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    failed = Connection(loop, sock, conn.server, ("127.0.0.1", 50001), read_now=True)
    assert failed.state is CLOSED and sock.closed
    assert [str(exc) for exc in reported] == ["our bug"]
    loop.set_exception_handler(None)
