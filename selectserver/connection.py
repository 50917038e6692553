"""Chapter 3: one connection, the I/O shell around the sans-IO engine.

A ``Connection`` owns one non-blocking socket, a read side (the request
parser holds the unread bytes) and a write buffer.  The loop calls
``on_readable()`` and ``on_writable()``; the application side (an ASGI or
WSGI *cycle*, one per request) calls ``receive_body()``, ``respond()`` and
``send_body()``.

Its life is one state machine: ``TRANSITIONS`` maps (state, event) to the
next state, and ``_transition(event)`` is the only code that changes
``state`` (closing included).  A state that is not in the table for an
event cannot receive it: that is our bug, and it raises.  What a rule
needs to remember is a state, never a boolean beside it: a connection that
will close after this response is RUNNING_LAST, not RUNNING plus a flag.
Where the request stands is the parser's business, where the response
stands is the writer's.

Selector interest is derived from the state and the buffers in one method,
``_update_interest()``, and the selector is only told when it changes.

Invariant: nothing a client sends raises out of this module.  Protocol
errors become an answer with ``connection: close``; a peer that goes away
becomes a quiet close.
"""

from __future__ import annotations

import collections
import enum
import errno
import itertools
import logging
import os
import selectors
import socket
import ssl
import struct
import time
from typing import Any, Callable, Deque, Dict, Iterable, Optional, Set, Tuple

from .errors import HTTPError, InvalidResponse, RequestTimeout
from .http11.events import NEED_DATA, Data, Request
from .http11.parser import Limits, RequestParser
from .http11.writer import CONTINUE, ResponseWriter, error_response

log = logging.getLogger("selectserver.error")

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE

# Deadlines are on the monotonic clock, as the loop's time() is.
_monotonic = time.monotonic

# One recv() takes up to this much; 64 KiB keeps large uploads at a few
# syscalls per megabyte without holding much per connection.
RECV_BYTES = 64 * 1024

# A write at least this large is queued by reference, never copied, and not
# joined to the response head: the copies of a 1 MiB body (and the fresh
# pages they need) had tripled the CPU of scenario C (RESULTS.md).
LARGE_WRITE_BYTES = 64 * 1024

# At most this many pieces per sendmsg() (Linux's IOV_MAX is 1024).
_MAX_GATHER = 64

# The Retry-After of a refused request (RFC 9110 §10.2.3): a second is long
# enough for a burst to pass, short enough not to lose a client that would
# have been served.
RETRY_AFTER_S = 1
REFUSAL_DETAIL = "the server is busy; try again later"

# error_page() keeps at most this many pages (few are ever built: the
# details are the server's own constant texts).
_MAX_ERROR_PAGES = 16

# A stopping worker gives an idle kept-alive connection this long to send
# one last request (a busy client sends its next one at once; closing the
# socket under it would lose that request).
DRAIN_GRACE_S = 1.0

# A lingering close reads (and drops) what the client still sends for at
# most this long, and at most this many bytes, before it closes.
LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024

# Errors that mean the peer is gone, not that we have a bug.  A TLS error
# (bad record, close_notify) is the peer's doing too.
PEER_GONE = (ConnectionError, TimeoutError, ssl.SSLError)

# "Not now": the socket has no room or no bytes.  A TLS socket says it with
# SSLWant*Error (it may need to read in order to write, and the reverse);
# the selector wakes us when either side is ready again.
TRY_AGAIN = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class State(enum.Enum):
    # Identity hash: Enum's own hashes the name in Python code, which made
    # the per-request state-table lookups twice as slow (see RESULTS.md).
    __hash__ = object.__hash__

    HANDSHAKE = "tls handshake"          # TLS only: the handshake is in progress
    IDLE = "idle"                        # between requests, or before the first
    READING_HEAD = "reading head"        # part of a head has arrived
    RUNNING = "running"                  # an app has the request
    UPGRADED = "upgraded"                # the socket speaks another protocol (websocket)
    GRACE = "grace"                      # stopping: idle, one last request may still come
    READING_LAST_HEAD = "reading last head"   # stopping: part of the last head has arrived
    RUNNING_LAST = "running last"        # an app has the last request (connection: close)
    CLOSING = "closing"                  # the write queue is being flushed, nothing read
    LINGERING = "lingering"              # FIN sent; reading and dropping until the peer closes
    CLOSED = "closed"


class Event(enum.Enum):
    """What happened to a connection: the cause of a transition (the value
    is how ``--trace`` says it)."""

    __hash__ = object.__hash__   # as State's

    TLS_DONE = "TLS handshake done"
    BYTES = "part of a head arrived"
    HEAD = "a whole request head"
    KEEP_ALIVE = "response done, keep-alive"
    LAST_RESPONSE = "response done, no keep-alive"
    UPGRADE = "101 sent: the socket speaks another protocol now"
    STOP = "the worker stops taking work"
    ERROR = "a client error, answered with its status"
    FINISH = "last response queued; close once it is sent"
    TIMEOUT = "timeout"                   # the state's deadline passed
    FLUSHED = "all sent: FIN, then drop what the client still sends"
    PEER_GONE = "peer gone"               # EOF, reset, broken pipe
    CLOSE = "closed by the server"
    REFUSED = "503 sent whole, nothing left to read: closed at once"


HANDSHAKE, IDLE, READING_HEAD, RUNNING, UPGRADED, CLOSED = (
    State.HANDSHAKE, State.IDLE, State.READING_HEAD, State.RUNNING, State.UPGRADED, State.CLOSED)
GRACE, READING_LAST_HEAD, RUNNING_LAST, CLOSING, LINGERING = (
    State.GRACE, State.READING_LAST_HEAD, State.RUNNING_LAST, State.CLOSING, State.LINGERING)
(TLS_DONE, BYTES, HEAD, KEEP_ALIVE, LAST_RESPONSE, UPGRADE, STOP, ERROR, FINISH, TIMEOUT,
 FLUSHED, GONE, CLOSE, REFUSED) = tuple(Event)

# region: transitions
TRANSITIONS: Dict[Tuple[State, Event], State] = {
    (HANDSHAKE, TLS_DONE): IDLE,
    (HANDSHAKE, TIMEOUT): CLOSED,
    (HANDSHAKE, STOP): CLOSED,           # nothing read yet: nothing to lose
    (IDLE, BYTES): READING_HEAD,
    (IDLE, HEAD): RUNNING,               # a whole head in one read
    (IDLE, ERROR): CLOSING,              # a bad head in one read
    (IDLE, TIMEOUT): LINGERING,          # keep-alive over
    (IDLE, STOP): GRACE,
    (READING_HEAD, HEAD): RUNNING,
    (READING_HEAD, ERROR): CLOSING,
    (READING_HEAD, TIMEOUT): CLOSING,    # 408
    (READING_HEAD, STOP): READING_LAST_HEAD,
    (RUNNING, KEEP_ALIVE): IDLE,
    (RUNNING, LAST_RESPONSE): CLOSING,
    (RUNNING, UPGRADE): UPGRADED,
    (RUNNING, ERROR): CLOSING,           # a malformed body
    (RUNNING, FINISH): CLOSING,
    (RUNNING, TIMEOUT): CLOSING,         # the body is too slow: 408
    (RUNNING, STOP): RUNNING_LAST,
    (RUNNING, REFUSED): CLOSED,          # no lingering: see refuse()
    (GRACE, BYTES): READING_LAST_HEAD,
    (GRACE, HEAD): RUNNING_LAST,
    (GRACE, ERROR): CLOSING,
    (GRACE, TIMEOUT): LINGERING,
    (READING_LAST_HEAD, HEAD): RUNNING_LAST,
    (READING_LAST_HEAD, ERROR): CLOSING,
    (READING_LAST_HEAD, TIMEOUT): CLOSING,
    (RUNNING_LAST, KEEP_ALIVE): CLOSING,  # the head was out before the stop
    (RUNNING_LAST, LAST_RESPONSE): CLOSING,
    (RUNNING_LAST, UPGRADE): UPGRADED,
    (RUNNING_LAST, ERROR): CLOSING,
    (RUNNING_LAST, FINISH): CLOSING,
    (RUNNING_LAST, TIMEOUT): CLOSING,
    (RUNNING_LAST, REFUSED): CLOSED,
    (UPGRADED, FINISH): CLOSING,
    (CLOSING, FLUSHED): LINGERING,
    (CLOSING, TIMEOUT): CLOSED,
    (LINGERING, TIMEOUT): CLOSED,
    # From any state but CLOSED: the peer left, or we close now.
    **{(state, event): CLOSED for state in State if state is not CLOSED
       for event in (GONE, CLOSE)},
}
# endregion: transitions

# The same table by state, then event (each server adds its deadlines:
# ServerState.moves).
_NEXT: Dict[State, Dict[Event, State]] = {state: {} for state in State}
for (_state, _event), _new in TRANSITIONS.items():
    _NEXT[_state][_event] = _new
del _state, _event, _new

# The states in which the connection waits for (or reads) a request head.
_AWAITING_HEAD = frozenset((IDLE, READING_HEAD, GRACE, READING_LAST_HEAD))


class WriteQueue:
    """The bytes waiting for the socket, in order, large pieces uncopied.

    Small writes are copied into one growing ``bytearray`` (many small
    answers leave in one ``send()``); a ``bytes`` piece of at least
    ``LARGE_WRITE_BYTES`` is kept by reference, so that a 1 MiB body waiting
    for its turn costs no copy.  ``send(sock)`` hands the kernel as many
    pieces as it can in one ``sendmsg()`` (a gather write) where the socket
    has one, else the first piece.  ``size`` is the number of bytes queued
    (an attribute, not ``len()``: it is read several times per request).
    ``pieces`` is public because ``Connection.write()`` queues the usual
    answer of a batch into an empty queue itself.
    """

    __slots__ = ("pieces", "size", "_gather")

    def __init__(self, gather: bool) -> None:
        self.pieces: Deque[Any] = collections.deque()
        self.size = 0
        self._gather = gather

    def append(self, data: Any) -> None:
        size = len(data)
        if not size:
            return
        pieces = self.pieces
        self.size += size
        if not pieces and type(data) is bytes:
            pieces.append(data)   # the usual case, one answer: kept as it is
            return
        if size >= LARGE_WRITE_BYTES and _immutable(data):
            pieces.append(memoryview(data))   # safe to keep: nobody can change it
            return
        last = pieces[-1] if pieces else None
        if type(last) is bytearray:
            last += data
        elif type(last) is bytes and len(last) < LARGE_WRITE_BYTES:
            # A second small piece: from now on they are joined (16
            # pipelined answers leave as one piece).
            joined = bytearray(last)
            joined += data
            pieces[-1] = joined
        else:
            pieces.append(bytearray(data))

    def send(self, sock: Any) -> int:
        """One system call; returns the bytes sent (and drops them)."""
        pieces = self.pieces
        if len(pieces) > 1 and self._gather:
            sent = sock.sendmsg(list(itertools.islice(pieces, _MAX_GATHER)))
        else:
            sent = sock.send(pieces[0])
        self.drop(sent)
        return sent

    def drop(self, sent: int) -> None:
        """Forget the first ``sent`` bytes: the kernel took them."""
        pieces = self.pieces
        if sent == self.size:
            pieces.clear()
            self.size = 0
            return
        self.size -= sent
        left = sent
        while left:
            first = pieces[0]
            if left < len(first):
                if type(first) is bytearray:
                    del first[:left]
                else:
                    pieces[0] = memoryview(first)[left:]
                break
            left -= len(first)
            pieces.popleft()


def _immutable(data: Any) -> bool:
    """``bytes``, or a memoryview of ``bytes`` (the rest of a partial send)."""
    return type(data) is bytes or (type(data) is memoryview and type(data.obj) is bytes)


class Cycle:
    """What a connection expects of the object serving one request.

    ``asgi.HTTPCycle`` and ``wsgi.WSGICycle`` implement it; the methods are
    notifications and must not raise.
    """

    __slots__ = ()

    # True when the cycle calls respond() and send_body() from inside an
    # app's task step (ASGI), where no other task may start: the connection
    # then leaves the next pipelined request to continue_serving(), which
    # the task calls after the step.  False (WSGI: calls from loop
    # callbacks): the connection starts it at once.
    in_app_step = False

    def on_data_received(self) -> None:
        """More request bytes arrived (``receive_body()`` may have news)."""

    def on_drained(self) -> None:
        """The write buffer fell below the low-water mark."""

    def on_disconnect(self) -> None:
        """The client is gone (or its request body ran out of time, answered
        408 by the connection); later writes are dropped."""


class Protocol(Cycle):
    """What an upgraded connection (a websocket) hands its bytes to.

    Besides the ``Cycle`` notifications: ``on_data(data)`` for each chunk
    read from the socket.  ``on_disconnect`` also means EOF.
    """

    __slots__ = ()

    # While False the connection leaves the socket unread (the protocol's
    # backpressure); the protocol changes it together with set_reading().
    reading = True

    def on_data(self, data: bytes) -> None:
        """Bytes read from the socket."""

    def on_shutdown(self) -> None:
        """The server is stopping: end the protocol politely, then close."""


class ServerState:
    """What all connections of one worker share: settings, clock, registry.

    ``handler(conn, request)`` starts serving a request and returns its
    ``Cycle``.  ``date_server`` is the ``date:``/``server:`` header block,
    refreshed once a second by the worker.
    """

    def __init__(self, config: Any, handler: Callable[["Connection", Request], Cycle]) -> None:
        self.config = config
        self.handler = handler
        self.limits = Limits(
            max_request_line_bytes=config.limit_request_line_bytes,
            max_header_bytes=config.limit_request_header_bytes,
            max_header_count=config.limit_request_fields,
            max_body_bytes=config.limit_request_body_bytes,
        )
        self.read_high_bytes = config.read_buffer_high_bytes
        self.write_high_bytes = config.write_buffer_high_bytes
        self.write_low_bytes = config.write_buffer_high_bytes // 4
        # The deadline each state sets when it is entered (none: no deadline).
        # RUNNING's is the request body's, set only while a body is owed.
        self.timeouts_s: Dict[State, float] = {
            HANDSHAKE: config.timeout_request_head_s,
            IDLE: config.timeout_keep_alive_s,
            READING_HEAD: config.timeout_request_head_s,
            GRACE: min(DRAIN_GRACE_S, config.timeout_keep_alive_s),
            READING_LAST_HEAD: config.timeout_request_head_s,
            CLOSING: config.timeout_graceful_shutdown_s,
            LINGERING: LINGER_S,
        }
        # The table by state, then event, with the deadline each move sets:
        # one lookup per transition (no tuple to build, no timeouts_s.get()).
        self.moves: Dict[State, Dict[Event, Tuple[State, Optional[float]]]] = {
            state: {event: (new, self.timeouts_s.get(new)) for event, new in row.items()}
            for state, row in _NEXT.items()}
        self.body_timeout_s = config.timeout_request_body_s
        # Each byte of body received moves the body's deadline this much later.
        self.body_s_per_byte = 1.0 / config.request_body_min_rate_bytes
        self.date_server = b""
        self.connections: Set["Connection"] = set()
        self.draining = False
        self.requests_served = 0
        self.scheme = "https" if config.is_ssl else "http"
        # With TLS, the worker sets the server's ssl.SSLContext here.
        self.ssl_context: Optional[ssl.SSLContext] = None
        # --limit-concurrency: the connections whose request is in flight
        # (admitted at its head, released when its response ends or the
        # connection closes; an upgraded connection stays until it closes).
        self.limit_concurrency = config.limit_concurrency
        self.in_flight: Set["Connection"] = set()
        # error_page()'s pages for the current date_server.
        self._error_pages: Dict[Tuple[int, str, bytes], Tuple[bytes, int]] = {}
        self._error_pages_date = b""
        # Called as trace(conn, old_state, event, new_state) on every
        # transition when --trace is on (see trace.py).
        self.trace: Optional[Callable[["Connection", State, Event, State], None]] = None
        # Called as on_response(conn, request, writer, duration_s) after
        # every response (by the cycle for one the client cut short); the
        # worker sets it when the access log is on.
        self.on_response: Optional[Callable[..., None]] = None

    def error_page(self, status: int, detail: str = "", fields: bytes = b"") -> Tuple[bytes, int]:
        """The server's own answer with ``status`` (``error_response()``)
        and the size of its body.

        Built once per ``date_server`` and kept: under overload the same 503
        is sent thousands of times a second, and only its Date changes.
        """
        date_server = self.date_server
        pages = self._error_pages
        if date_server is not self._error_pages_date:
            pages.clear()
            self._error_pages_date = date_server
        key = (status, detail, fields)
        entry = pages.get(key)
        if entry is None:
            if len(pages) >= _MAX_ERROR_PAGES:
                pages.clear()
            page = error_response(status, date_server + fields, detail)
            entry = pages[key] = (page, len(page) - page.index(b"\r\n\r\n") - 4)
        return entry

    def admit(self, conn: "Connection") -> bool:
        """Count ``conn``'s new request in flight, or return False when
        --limit-concurrency requests already are (the request is refused).

        What is admitted is served at full speed; only the excess is turned
        away, so one client too many costs one 503, not every answer.
        """
        in_flight = self.in_flight
        if len(in_flight) >= self.limit_concurrency:
            return False
        in_flight.add(conn)
        return True


class Connection:
    """One client socket and the state machine that serves it."""

    __slots__ = (
        "loop", "sock", "server", "parser", "state", "deadline", "client",
        "local", "request", "writer", "cycle", "started_at",
        "_interest", "_write_buffer", "_file", "_continue_owed", "_lingered_bytes",
    )

    def __init__(self, loop: Any, sock: socket.socket, server: ServerState,
                 client: Optional[Tuple[str, int]] = None,
                 local: Optional[Tuple[str, int]] = None, read_now: bool = False) -> None:
        if server.ssl_context is not None:
            # No I/O here: the handshake happens in the loop (HANDSHAKE state).
            sock = server.ssl_context.wrap_socket(sock, server_side=True,
                                                  do_handshake_on_connect=False)
            state = HANDSHAKE
        else:
            state = IDLE
        self.loop = loop
        self.sock = sock
        self.server = server
        self.parser = RequestParser(server.limits)
        self.state = state
        self.deadline = _monotonic() + server.timeouts_s[state]
        self.client = client
        # The listener may know it (one system call less per connection).
        self.local = local if local is not None else _sockname(sock)
        self.request: Optional[Request] = None
        self.writer: Optional[ResponseWriter] = None
        self.cycle: Optional[Cycle] = None
        self.started_at = 0.0
        # What the selector watches for; 0: the socket is not on it.
        self._interest = 0
        # sendmsg(): plain sockets only (ssl.SSLSocket refuses it).
        self._write_buffer = WriteQueue(server.ssl_context is None and hasattr(sock, "sendmsg"))
        # A FileTransfer queued behind the write buffer (send_file), or None.
        self._file: Optional[FileTransfer] = None
        # The request's "Expect: 100-continue" is not answered yet (the
        # Request event itself is never changed after parsing).
        self._continue_owed = False
        self._lingered_bytes = 0
        server.connections.add(self)
        if read_now and state is IDLE:
            # A client sends its request right behind its connect, so it is
            # usually here when we accept: read it now, and put the socket on
            # the selector only if the connection stays open.  A refusal, or
            # a request that asks to close, is answered and closed without an
            # epoll_ctl() or a wake-up of its own (RESULTS.md, issue 16).
            try:
                self.on_readable()
            except Exception as exc:
                # Our bug, met outside the loop's dispatch (the listener's
                # accept called us): as the loop would, report it and drop
                # this connection only.
                loop.call_exception_handler({"message": "error in connection callback",
                                             "exception": exc, "connection": self})
                self.abort()
                return
            if self.state is not CLOSED:
                self._update_interest()
        else:
            self._interest = EVENT_READ
            loop.add_connection(sock, self, EVENT_READ)

    # -- state ----------------------------------------------------------------

    def _transition(self, event: Event) -> State:
        """Apply ``event`` to the state by the table; return the new state.

        The only code that assigns ``state``.  Raises RuntimeError for an
        event the current state cannot receive (a bug of ours).
        """
        old = self.state
        server = self.server
        try:
            new, timeout = server.moves[old][event]
        except KeyError:
            raise RuntimeError("illegal transition: %s in state %s" % (event.name, old.name)) from None
        self.state = new
        trace = server.trace
        if trace is not None:
            trace(self, old, event, new)
        # The turn's clock (loop.py, "turn-clock"): no clock read per request.
        self.deadline = self.loop.now + timeout if timeout else 0.0
        return new

    def _update_interest(self) -> None:
        state = self.state
        if state is CLOSED:
            return
        reading = state is not CLOSING
        queued = self._write_buffer.size
        if queued:
            # Queued during a batch of events, the bytes leave when the loop
            # flushes this connection at the batch's end: no EVENT_WRITE for
            # them (unless we were already waiting for one).
            wanted = EVENT_WRITE if self.loop.batch is None else self._interest & EVENT_WRITE
            if queued > self.server.write_high_bytes and state in _AWAITING_HEAD:
                # A client that pipelines and does not read its answers:
                # read no more requests until they are sent (on_writable).
                reading = False
        elif self._file is not None:
            wanted = EVENT_WRITE
        else:
            wanted = 0
        # Read while there is room: above the high-water mark the client
        # waits (TCP flow control) until the application consumes the body.
        if reading and self.parser.buffered_bytes < self.server.read_high_bytes:
            # An upgraded protocol says itself whether it wants more bytes.
            if state is not UPGRADED or self.cycle is None or self.cycle.reading:
                wanted |= EVENT_READ
        if wanted != self._interest:
            if self._interest:
                self.loop.set_interest(self.sock, self, wanted)
            else:
                self.loop.add_connection(self.sock, self, wanted)   # read_now, or paused
            self._interest = wanted

    # -- the loop's callbacks ---------------------------------------------------

    # region: on-readable
    def on_readable(self) -> None:
        state = self.state
        if state is HANDSHAKE:
            self._handshake()
            return
        try:
            data = self.sock.recv(RECV_BYTES)
        except TRY_AGAIN:
            return
        except OSError as exc:
            self._peer_gone(exc)
            return
        if not data:
            self._peer_gone(None)
            return
        if state is IDLE:
            # "The usual state asked first": a keep-alive request arrives on
            # an idle connection, so that state skips the three tests below
            # (A -401 instructions per request, callgrind, CPython 3.11).
            self.parser.feed(data)
            self._serve_buffered()
            return
        if state is UPGRADED:
            self.cycle.on_data(data)
            return
        if state is LINGERING:
            self._lingered_bytes += len(data)
            if self._lingered_bytes > LINGER_BYTES:
                self.close()
            return
        self.parser.feed(data)
        if state is RUNNING or state is RUNNING_LAST:
            if self.deadline:
                # The body's deadline moves with what arrives: slow but
                # steady passes, a trickle runs out (--request-body-min-rate).
                self.deadline += len(data) * self.server.body_s_per_byte
            cycle = self.cycle
            if cycle is not None:
                cycle.on_data_received()
            self._update_interest()
        elif state in _AWAITING_HEAD:
            self._serve_buffered()
    # endregion: on-readable

    def on_writable(self) -> None:
        """The socket has room, or the loop's batch of events is over and
        what was queued during it is to be sent (the loop calls this then,
        for each connection that queued: one call fewer per keep-alive
        response than a flush() of its own, -535 instructions, callgrind,
        CPython 3.11).  Either way, a part the kernel does not take waits
        for EVENT_WRITE."""
        state = self.state
        if state is HANDSHAKE:
            self._handshake()
            return
        if state is CLOSED:
            return
        buffer = self._write_buffer
        if not buffer.size:
            if self._file is not None:
                self._send_file_part()
                return
            self._update_interest()
            return
        pieces = buffer.pieces
        try:
            if len(pieces) == 1:
                # "One piece flushed without a call": the usual flush is one
                # answer, or the answers of a pipelined batch joined into one
                # bytearray, and needs no gather write: WriteQueue.send()'s
                # choice made here (A -392 instructions, callgrind, CPython 3.11).
                sent = self.sock.send(pieces[0])
                if sent == buffer.size:
                    pieces.clear()
                    buffer.size = 0
                else:
                    buffer.drop(sent)
            else:
                buffer.send(self.sock)
        except TRY_AGAIN:
            if not self._interest & EVENT_WRITE:
                self._update_interest()   # the loop's flush: wait for room
            return
        except OSError as exc:
            self._peer_gone(exc)
            return
        if buffer.size:
            if not self._interest & EVENT_WRITE:
                self._update_interest()   # the loop's flush: wait for room
            if self.cycle is not None and buffer.size <= self.server.write_low_bytes:
                self.cycle.on_drained()
            return
        if state is CLOSING:
            self._flushed()
            return
        if state not in _AWAITING_HEAD:
            self._update_interest()
        elif not self._interest & EVENT_READ:
            # Pipelined requests waited for their turn (_serve_buffered).
            self._serve_buffered()
            return
        elif self._interest != EVENT_READ or self._file is not None or self.parser.buffered_bytes:
            self._update_interest()
        # Else all is sent, nothing is buffered and we read: _update_interest()
        # would want EVENT_READ, which is already set (one call fewer per
        # keep-alive response, see benchmarks/RESULTS.md).
        if self.cycle is not None:
            self.cycle.on_drained()

    def on_timeout(self) -> None:
        """The deadline of the current state passed (the worker's tick)."""
        state = self.state
        if state is READING_HEAD or state is READING_LAST_HEAD:
            self._reject(RequestTimeout("no complete request head in %ss"
                                        % self.server.timeouts_s[state]), TIMEOUT)
        elif state is RUNNING or state is RUNNING_LAST:
            self._body_timeout()
        elif state is IDLE or state is GRACE:
            self._transition(TIMEOUT)
            self._linger()
        elif state is HANDSHAKE or state is CLOSING or state is LINGERING:
            self._close(TIMEOUT)

    def _body_timeout(self) -> None:
        parser = self.parser
        if parser.body_complete:
            self.deadline = 0.0   # all here: how long the app takes is its business
        elif parser.buffered_bytes >= self.server.read_high_bytes:
            # We stopped reading (the app is slow to consume): not the client's fault.
            self.deadline = _monotonic() + self.server.body_timeout_s
        else:
            self._reject(RequestTimeout("request body too slow"), TIMEOUT)

    def _handshake(self) -> None:
        """One more step of the TLS handshake; IDLE once it is done."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            wanted = EVENT_READ
        except ssl.SSLWantWriteError:
            wanted = EVENT_WRITE
        except OSError as exc:
            # Not TLS, an untrusted certificate, a reset: the client's doing.
            log.debug("%s: TLS handshake failed: %s", _peer(self.client), exc)
            self._close(GONE)
            return
        else:
            self._transition(TLS_DONE)
            wanted = EVENT_READ
        if wanted != self._interest:
            self._interest = wanted
            self.loop.set_interest(self.sock, self, wanted)

    # -- requests in ----------------------------------------------------------------

    def _serve_buffered(self) -> None:
        """Start every request whose head is complete, one at a time.

        An application that answers at once finishes inside ``handler()``;
        the loop then goes on to the next pipelined request, in order.
        Never called inside an app's task step (a task cannot start there).
        """
        parser = self.parser
        buffer, write_high_bytes = self._write_buffer, self.server.write_high_bytes
        while True:
            state = self.state
            if state is not IDLE and state not in _AWAITING_HEAD:
                break
            if buffer.size > write_high_bytes:
                # The client does not read its answers: the next request
                # waits until they are sent (on_writable), or memory would
                # grow with every pipelined request.
                self._update_interest()
                return
            if not parser.buffered_bytes:
                # Nothing left to parse (after a keep-alive answer, the
                # usual case): no call to be told NEED_DATA (-690
                # instructions per request, callgrind, CPython 3.11).
                break
            try:
                event = parser.next_event()
            except HTTPError as exc:
                self._reject(exc)
                return
            if event is NEED_DATA:
                if parser.buffered_bytes and (state is IDLE or state is GRACE):
                    self._transition(BYTES)
                break
            self._begin(event)
        if buffer.size:
            if self.loop.batch is None:
                self._update_interest()
            # Else the loop flushes this connection at the end of its batch,
            # and settles the interest then.
            return
        state = self.state
        if (self._interest != EVENT_READ or self._file is not None or state is CLOSING
                or state is UPGRADED or parser.buffered_bytes >= self.server.read_high_bytes):
            self._update_interest()
        # Else "the interest is already right": nothing to send, room to read
        # and EVENT_READ set, in a state that reads, which is what
        # _update_interest() would want: no call (the usual WSGI head, whose
        # app runs on a pool thread; WSGI hello -900 instructions per
        # request, callgrind, CPython 3.11).

    def continue_serving(self) -> None:
        """Serve the next pipelined request, if one is waiting.

        Called outside any app step: by an app's task after each of its
        later steps (a response that ended there moved the state, but could
        not start the next request inside the step).
        """
        state = self.state
        if state is IDLE or state is GRACE:
            self._serve_buffered()

    def _begin(self, request: Request) -> None:
        server = self.server
        self.request = request
        self.writer = writer = ResponseWriter(request)
        new = self._transition(HEAD)
        if new is RUNNING and server.draining:
            # The worker stopped taking work and has not told us yet.
            new = self._transition(STOP)
        if new is RUNNING_LAST:
            writer.keep_alive = False   # the worker is stopping: say connection: close
        if request.content_length or request.chunked:
            # --timeout-request-body: the body's deadline starts now (a body
            # that is all here already is let off when it passes).
            self.deadline = self.loop.now + server.body_timeout_s
        self._continue_owed = request.expect_continue
        if server.on_response is not None:
            self.started_at = _monotonic()
        server.requests_served += 1
        if server.limit_concurrency is not None and not server.admit(self):
            # Refused without calling the app, after the head is read so the
            # client sees the 503 (closing an unread socket would reset it).
            self.refuse()
            return
        # The handler sets self.cycle before it starts the app, because an
        # app that answers at once finishes inside this call.
        server.handler(self, request)

    def receive_body(self) -> Any:
        """The next piece of the request body, or None when none is here yet.

        Returns ``Data`` or ``EndOfMessage``.  The first call answers a
        client waiting on ``Expect: 100-continue``.  On a malformed body the
        connection answers 400 itself and the cycle is told the client is gone.
        """
        state = self.state
        if self.request is None or (state is not RUNNING and state is not RUNNING_LAST):
            return None
        if self._continue_owed:
            # RFC 9110 §10.1.1: only now that the app wants the body.
            self._continue_owed = False
            if not self.writer.started:
                self.write(CONTINUE)
        try:
            event = self.parser.next_event()
        except HTTPError as exc:
            self._reject(exc)
            return None
        if event is NEED_DATA:
            return None
        if event.__class__ is Data and not self._interest & EVENT_READ:
            # Consuming can only let reading resume (backpressure).
            self._update_interest()
        return event

    def receive_whole_body(self) -> Optional[bytes]:
        """The rest of the request's Content-Length body in one piece, when
        all of it is here; else None, and nothing changes (``receive_body()``
        then takes it as it comes).

        What ``receive_body()`` would hand out as ``Data`` and then
        ``EndOfMessage``, with the same duties: a client waiting on
        ``Expect: 100-continue`` is answered, and reading resumes if the
        body held it back.  One call instead of two, each with a
        ``next_event()`` (WSGI E -6,600 instructions per request, with
        ``RequestParser.take_body()``; callgrind, CPython 3.11).
        """
        state = self.state
        if state is not RUNNING and state is not RUNNING_LAST:
            return None
        body = self.parser.take_body()
        if body is None:
            return None
        if self._continue_owed:
            self._continue_owed = False
            if not self.writer.started:
                self.write(CONTINUE)
        if not self._interest & EVENT_READ:
            self._update_interest()
        return body

    def upgrade(self, protocol: Protocol) -> bytes:
        """Hand the socket to another protocol after a 101 response.

        Returns the bytes the client already sent past the request head
        (they belong to the new protocol).  From now on reads go to
        ``protocol.on_data``; write with ``write()``; end with
        ``close_after_flush()`` or ``close()``.
        """
        self._transition(UPGRADE)
        self.cycle = protocol
        leftover = self.parser.take_unparsed()
        self._update_interest()
        return leftover

    def set_reading(self, enabled: bool) -> None:
        """Upgraded protocols only: the protocol's ``reading`` changed to
        ``enabled``; stop or resume reading accordingly (backpressure)."""
        if self.state is UPGRADED:
            self._update_interest()

    # -- responses out -------------------------------------------------------------

    def respond(self, status: int, headers: Iterable[Tuple[bytes, bytes]],
                body: bytes = b"", end: bool = False) -> bool:
        """Send the head and a first piece of body together, in one write.

        Raises ``InvalidResponse`` (nothing sent) when the head is not valid
        HTTP.  Returns True when the caller should wait for ``on_drained``.
        With ``end`` the response is complete (see ``send_body``).
        """
        # The length first: a small body, the usual one, fails at once.
        if len(body) >= LARGE_WRITE_BYTES and type(body) is bytes:
            # The head alone, then the body: joining them would copy it.
            self.respond(status, headers)
            return self.send_body(body, end)
        head = self.writer.respond(status, headers, self.server.date_server, body, end)
        state = self.state
        if state is RUNNING or state is RUNNING_LAST:
            self.write(head)
        if end:
            self._finish_response()
        return self._write_buffer.size > self.server.write_high_bytes

    def send_body(self, body: bytes, end: bool = False) -> bool:
        """Send more body (framed by the writer); ``end`` finishes the response.

        At the end the connection moves on at once (IDLE for the next
        request, or CLOSING).  Called from a loop callback, it also starts
        the next pipelined request; inside an app's task step it leaves that
        to ``continue_serving()``.
        """
        writer = self.writer
        data = writer.body(body) if body else b""
        if end:
            last = writer.end()
            if last:
                # Only the last chunk: never copy a body to add b"" to it
                # (CPython would not, PyPy would).
                data = data + last if data else last
        state = self.state
        if data and (state is RUNNING or state is RUNNING_LAST):
            self.write(data)
        if end:
            self._finish_response()
        return self._write_buffer.size > self.server.write_high_bytes

    def respond_error(self, status: int, detail: str = "", fields: bytes = b"") -> None:
        """Answer with a server-made error page and close after it; ``fields``
        are extra header lines (``name: value\r\n`` each).

        The response ends as an app's does (``_finish_response``): the
        access log has its line, and the request leaves --limit-concurrency's
        count at once, not when the lingering close is over.
        """
        state = self.state
        if state is not RUNNING and state is not RUNNING_LAST:
            self.cycle = None
            return
        page, body_bytes = self.server.error_page(status, detail, fields)
        self.writer.answered(status, body_bytes)   # connection: close
        self.write(page)
        self._finish_response()

    # region: refuse
    def refuse(self, retry_after_s: int = RETRY_AFTER_S) -> None:
        """Answer 503 with Retry-After and ``connection: close`` without
        calling the app: --limit-concurrency is reached, or the WSGI queue
        is full.  Ends the response as ``respond_error`` does.

        Under overload this runs thousands of times a second, so it costs as
        little as it honestly can: the page is built once per Date
        (``ServerState.error_page``), sent in one ``send()``, and when that
        takes it whole and nothing of the client's is left unread, the
        socket is closed at once instead of lingering.
        """
        state = self.state
        request = self.request
        fields = b"retry-after: %d\r\n" % retry_after_s
        if ((state is not RUNNING and state is not RUNNING_LAST) or self._write_buffer.size
                or self.parser.buffered_bytes or request.content_length or request.chunked):
            # Answers still queued before ours, bytes of the client's not
            # read (a pipelined request, a body): the lingering close.
            self.respond_error(503, REFUSAL_DETAIL, fields)
            return
        server = self.server
        page, body_bytes = server.error_page(503, REFUSAL_DETAIL, fields)
        self.writer.answered(503, body_bytes)
        # Now, not at the end of the loop's batch: nothing is queued before
        # it, and nothing will follow it on this connection.
        try:
            sent = self.sock.send(page)
        except TRY_AGAIN:
            sent = 0
        except OSError as exc:
            self._peer_gone(exc)
            return
        if sent < len(page):
            self._write_buffer.append(memoryview(page)[sent:] if sent else page)
            self._finish_response()   # CLOSING: the rest, then the lingering close
            return
        # RFC 9112 §9.6 asks for a close in stages (FIN, then read until the
        # client closes) because bytes that reach a closed socket make the
        # kernel send a reset, which can destroy the answer before the client
        # has read it.  Here every byte the client sent is read, the request
        # had no body, and our answer says connection: close, so a client
        # that waits for its answer (as RFC 9112 §9.3.2 expects of one that
        # does not pipeline) sends nothing more.  Only a client that pipelined
        # its next request right behind this one can be reset, and then it
        # loses a 503 for a request the app never saw: RFC 9112 §9.3.2 tells
        # it to retry what was not answered, which is safe here even for a
        # POST, and what the 503 would have told it anyway.  Lingering would
        # cost every refusal a shutdown(), a wake-up and a recv() more.
        if server.on_response is not None:
            self.log_response()
        self.cycle = None
        self._close(REFUSED)   # also leaves in_flight (it never was, when admit() refused)
    # endregion: refuse

    # region: write
    def write(self, data: bytes) -> None:
        """Send now if nothing is queued; queue what the kernel did not take.

        During the loop's batch of events, writes are only queued and the
        loop flushes them once every ready socket was read, so that the
        answers to pipelined requests leave in one ``send()`` (16 pipelined
        requests: one system call, not 16).
        """
        buffer = self._write_buffer
        if buffer.size:
            buffer.append(data)
            return
        batch = self.loop.batch
        if batch is not None:
            batch.append(self)
            if data.__class__ is bytes and data:
                # "One answer queued without a call": the usual response of
                # a batch goes into an empty queue, and is kept as it is --
                # what WriteQueue.append() would do, one Python call fewer
                # (A -985 instructions per request, callgrind, CPython 3.11).
                buffer.pieces.append(data)
                buffer.size = len(data)
            else:
                buffer.append(data)
            return
        try:
            sent = self.sock.send(data)
        except TRY_AGAIN:
            sent = 0
        except OSError as exc:
            self._peer_gone(exc)
            return
        if sent < len(data):
            # Only a partial send costs an epoll_ctl (DESIGN.md decision 5).
            buffer.append(memoryview(data)[sent:] if sent else data)
            self._update_interest()
    # endregion: write

    @property
    def write_buffer_bytes(self) -> int:
        return self._write_buffer.size

    # region: finish-response
    def _finish_response(self) -> None:
        """The response is complete: decide keep-alive (here only) and move on."""
        writer, server, cycle = self.writer, self.server, self.cycle
        if server.limit_concurrency is not None:
            server.in_flight.discard(self)
        if server.on_response is not None:
            self.log_response()
        self.cycle = None
        state = self.state
        if state is not RUNNING and state is not RUNNING_LAST:
            return
        # The writer's verdict (the request's wish, the app's fields, the
        # framing), and the next request's start must be findable: a body
        # the app did not read is skipped if it is all here, but not one the
        # client holds back until it gets 100 Continue.  (skip_body by
        # position: CPython 3.11 specializes a call without keywords.)
        if writer.keep_alive and self.parser.next_request(not self._continue_owed):
            state = self._transition(KEEP_ALIVE)
        else:
            state = self._transition(LAST_RESPONSE)
        if state is CLOSING:
            self._closing()
        elif cycle is not None and not cycle.in_app_step:
            # A loop callback (WSGI): go on now, unless "nothing to go on
            # with": no byte of a next request, nothing to send and
            # EVENT_READ set, where _serve_buffered() would only find the
            # interest as it wants it (two calls fewer per WSGI response,
            # WSGI hello -2,250 instructions per request, callgrind,
            # CPython 3.11).
            if (self.parser.buffered_bytes or self._write_buffer.size or self._file is not None
                    or self._interest != EVENT_READ):
                self._serve_buffered()
        # Else we are inside an app's task step, where no other task may
        # start, or inside the handler (an answer the server made itself):
        # _serve_buffered's loop (the app answered at once) or the task's
        # continue_serving() (it answered later) goes on from here.
    # endregion: finish-response

    def log_response(self) -> None:
        """Give the access log (when it is on) its line for this response,
        as far as it was sent."""
        on_response = self.server.on_response
        if on_response is not None:
            on_response(self, self.request, self.writer, _monotonic() - self.started_at)

    def close_after_flush(self) -> None:
        """Close once the write buffer is sent, with a lingering close
        (bounded by the CLOSING and LINGERING deadlines)."""
        state = self.state
        if state is RUNNING or state is RUNNING_LAST or state is UPGRADED:
            self._transition(FINISH)
            self._closing()
        elif state is not CLOSING and state is not LINGERING and state is not CLOSED:
            self.close()

    def _closing(self) -> None:
        """Entered CLOSING: flush, then the lingering close."""
        if self._write_buffer.size or self._file is not None:
            self._update_interest()
        else:
            self._flushed()

    def _flushed(self) -> None:
        """CLOSING with nothing left to send.

        A client that asked to close and whose request we read whole has
        nothing more to say: close.  Otherwise it may be sending right now
        (a pipelined request, a body we did not read, its next keep-alive
        request): closing with unread bytes would reset the connection and
        could destroy our answer before it is read, so linger instead.
        """
        request = self.request
        if (request is not None and not request.keep_alive and not self.parser.buffered_bytes
                and self.parser.body_complete):
            self.close()
            return
        self._transition(FLUSHED)
        self._linger()

    def _linger(self) -> None:
        """Entered LINGERING: FIN now, then read and drop until the client
        closes (or the deadline or LINGER_BYTES)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._lingered_bytes = 0
        self._update_interest()

    # -- files out, zero-copy ------------------------------------------------------

    def send_file(self, file: Any, offset: int, count: int, on_done: Callable[[], None]) -> None:
        """Send ``count`` bytes of ``file`` from ``offset`` as body, after
        whatever is already queued; call ``on_done()`` once all are sent.

        Uses ``os.sendfile`` (the bytes never enter Python) when the file has
        a descriptor and the socket is plain TCP; under TLS, or without a
        descriptor, reads the file in pieces as the socket takes them.  A
        chunked response raises ``InvalidResponse`` (file bytes are not
        chunks).  Nothing else may be sent until ``on_done``, which is not
        called if the connection closes first -- as it does when the file
        turns out shorter than ``count``.
        """
        count = self.writer.file_body(count)
        # Not over TLS: sendfile() would put the file on the wire unencrypted.
        zero_copy = _HAS_SENDFILE and self.server.ssl_context is None
        try:
            fd = file.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
            zero_copy = False
        self._file = FileTransfer(file, fd, offset, count, zero_copy, on_done)
        state = self.state
        if state is not RUNNING and state is not RUNNING_LAST:
            self._file = None
        elif not self._write_buffer.size:
            self._send_file_part()

    def _send_file_part(self) -> None:
        """Move the next part of the queued file to the socket (the buffer is empty)."""
        transfer = self._file
        size = min(transfer.remaining, FILE_PART_BYTES)
        try:
            if transfer.zero_copy:
                sent = os.sendfile(self.sock.fileno(), transfer.fd, transfer.offset, size) if size else 0
                data = None
            else:
                data = _read_part(transfer, size)
                sent = len(data)
        except TRY_AGAIN:
            self._update_interest()
            return
        except OSError as exc:
            if transfer.zero_copy and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                transfer.zero_copy = False   # this file or socket cannot sendfile: read it
                self._update_interest()
                return
            self._peer_gone(exc)
            return
        if sent == 0 and transfer.remaining:
            # The file shrank under us: the body cannot reach its length.
            log.warning("%s: file shorter than the response's length; closing", _peer(self.client))
            self.abort()
            return
        transfer.offset += sent
        transfer.remaining -= sent
        if data:
            self.write(data)
            if self.state is CLOSED:
                return
        if transfer.remaining:
            self._update_interest()      # EVENT_WRITE brings the next part
            return
        self._file = None
        if self.state is CLOSING and not self._write_buffer.size:
            self._flushed()
            return
        self._update_interest()
        transfer.on_done()

    # -- errors and endings ----------------------------------------------------------

    def _reject(self, exc: HTTPError, event: Event = ERROR) -> None:
        """Answer a client error with its status, then close (STYLE.md §7)."""
        state = self.state
        if (state is RUNNING or state is RUNNING_LAST) and self.writer.started:
            # The body went bad (or ran out of time) after the app began
            # answering: just cut it.
            log.info("%s: %d %s (response already started)", _peer(self.client), exc.status, exc.detail)
            self._close(event)
            return
        log.info("%s: %d %s", _peer(self.client), exc.status, exc.detail)
        self.write(error_response(exc.status, self.server.date_server, exc.detail))
        if self.state is CLOSED:
            return
        self._transition(event)
        if state is RUNNING or state is RUNNING_LAST:
            self._notify_disconnect()
        self._closing()

    def _peer_gone(self, exc: Optional[BaseException]) -> None:
        if exc is not None and not isinstance(exc, PEER_GONE) and exc.errno not in _GONE_ERRNOS:
            log.warning("%s: socket error %r", _peer(self.client), exc)
        else:
            log.debug("%s: peer gone (%s)", _peer(self.client), exc or "EOF")
        self._close(GONE)

    def _notify_disconnect(self) -> None:
        """Tell the cycle its client is gone (the cycle writes the access
        log's line for a response cut short)."""
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None
            cycle.on_disconnect()

    def close(self) -> None:
        """Close the socket now; pending output is dropped."""
        self._close(CLOSE)

    def _close(self, event: Event) -> None:
        if self.state is CLOSED:
            return
        self._transition(event)
        if self._interest:
            self.loop.remove_connection(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass
        self.server.connections.discard(self)
        self.server.in_flight.discard(self)
        self._write_buffer = WriteQueue(False)
        self._file = None
        self._notify_disconnect()

    def abort(self) -> None:
        """Close at once, telling the peer with a reset (the response is broken)."""
        if self.state is not CLOSED:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
            self.close()

    def shutdown(self) -> None:
        """Stop taking work, losing none already taken (the worker's drain).

        A request already received, or one whose head arrives within
        ``DRAIN_GRACE_S`` on this kept-alive connection (or within the head
        deadline when part of it is here), is served with ``connection:
        close``; a response in progress ends as it would, then the
        connection closes.  An idle connection that sends nothing in that
        window gets a lingering close (FIN first, then what the client still
        sends is read and dropped, briefly), so no client gets a reset for a
        request the server has read.  A TLS handshake in progress is closed;
        an upgraded protocol is asked to end (``Protocol.on_shutdown``).
        Calling it again changes nothing.  The caller then waits for
        ``server.connections`` to empty, up to ``--timeout-graceful-shutdown``,
        and aborts the rest.
        """
        state = self.state
        if state is UPGRADED:
            if self.cycle is not None:
                self.cycle.on_shutdown()
            return
        if STOP not in _NEXT[state]:
            return   # already stopping, or closing
        if state is HANDSHAKE:
            self._close(STOP)
            return
        self._transition(STOP)
        if state is RUNNING and not self.writer.started:
            self.writer.keep_alive = False   # the answer says connection: close

    def __repr__(self) -> str:
        return "<Connection %s %s>" % (_peer(self.client), self.state.value)


# sendfile() at most this much at once, so one big file cannot hold the
# loop; reads (TLS) take the same, the size of the write buffer's mark.
FILE_PART_BYTES = 256 * 1024

_HAS_SENDFILE = hasattr(os, "sendfile")


class FileTransfer:
    """A file being sent by ``Connection.send_file``."""

    __slots__ = ("file", "fd", "offset", "remaining", "zero_copy", "on_done")

    def __init__(self, file: Any, fd: int, offset: int, remaining: int, zero_copy: bool,
                 on_done: Callable[[], None]) -> None:
        self.file = file
        self.fd = fd
        self.offset = offset
        self.remaining = remaining
        self.zero_copy = zero_copy
        self.on_done = on_done


def _read_part(transfer: FileTransfer, size: int) -> bytes:
    if not size:
        return b""
    if transfer.fd >= 0:
        return os.pread(transfer.fd, size, transfer.offset)
    transfer.file.seek(transfer.offset)
    return transfer.file.read(size)


# SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)

_GONE_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                errno.ENOTCONN, errno.ESHUTDOWN}


def _sockname(sock: socket.socket) -> Optional[Tuple[str, int]]:
    try:
        name = sock.getsockname()
    except OSError:
        return None
    if isinstance(name, tuple):
        return (name[0], name[1])
    return None


def _peer(client: Optional[Tuple[str, int]]) -> str:
    return "%s:%s" % client if client else "unix"

