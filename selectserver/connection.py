"""Chapter 3: one connection, the I/O shell around the sans-IO engine.

A ``Connection`` owns one non-blocking socket, a read side (the request
parser holds the unread bytes) and a write buffer.  The loop calls
``on_readable()`` and ``on_writable()``; the application side (an ASGI or
WSGI *cycle*, one per request) calls ``receive_body()``, ``respond()`` and
``send_body()``.

The connection owns no flags, only a state::

    (HANDSHAKE ──TLS done──>) IDLE ──bytes──> READING_HEAD ──head──> RUNNING ──response done──> IDLE
      │                  │                    │
      └──────────────────┴─── error/close ────┴──> CLOSING ──flushed──> CLOSED

* HANDSHAKE: TLS only, before anything else: ``do_handshake()`` is retried
  whenever the socket is ready, so a slow or broken client never blocks the
  loop; the request-head deadline bounds it.
* IDLE: between requests (or before the first); the keep-alive clock runs.
* READING_HEAD: part of a head has arrived; the head deadline runs.
* RUNNING: an application has the request; the body flows to it on demand
  and its response flows to the socket.  Where the request stands is the
  parser's business, where the response stands is the writer's.
* UPGRADED: the socket speaks another protocol now (a websocket); bytes
  go to ``protocol.on_data()`` instead of the parser.
* CLOSING: a last response is being flushed; nothing more is read.

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
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

from .errors import HTTPError, InvalidResponse, RequestTimeout
from .http11.events import NEED_DATA, Data, EndOfMessage, Request
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

# Sent with the 503 of a request over --limit-concurrency (RFC 9110 §10.2.3):
# a second is long enough for a burst to pass, short enough not to lose a
# client that would have been served.
RETRY_AFTER = b"retry-after: 1\r\n"

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

    HANDSHAKE = "tls handshake"
    IDLE = "idle"
    READING_HEAD = "reading head"
    RUNNING = "running"
    UPGRADED = "upgraded"
    CLOSING = "closing"
    CLOSED = "closed"


HANDSHAKE, IDLE, READING_HEAD, RUNNING, UPGRADED, CLOSING, CLOSED = (
    State.HANDSHAKE, State.IDLE, State.READING_HEAD, State.RUNNING, State.UPGRADED, State.CLOSING, State.CLOSED)

TRANSITIONS: Dict[State, Set[State]] = {
    HANDSHAKE: {IDLE, CLOSED},
    IDLE: {READING_HEAD, RUNNING, CLOSING, CLOSED},   # RUNNING: a whole head in one read
    READING_HEAD: {RUNNING, CLOSING, CLOSED},
    RUNNING: {IDLE, UPGRADED, CLOSING, CLOSED},
    UPGRADED: {CLOSING, CLOSED},
    CLOSING: {CLOSED},
    CLOSED: set(),
}


class WriteQueue:
    """The bytes waiting for the socket, in order, large pieces uncopied.

    Small writes are copied into one growing ``bytearray`` (many small
    answers leave in one ``send()``); a ``bytes`` piece of at least
    ``LARGE_WRITE_BYTES`` is kept by reference, so that a 1 MiB body waiting
    for its turn costs no copy.  ``send(sock)`` hands the kernel as many
    pieces as it can in one ``sendmsg()`` (a gather write) where the socket
    has one, else the first piece.  ``size`` is the number of bytes queued
    (an attribute, not ``len()``: it is read several times per request).
    """

    __slots__ = ("_pieces", "size", "_gather")

    def __init__(self, gather: bool) -> None:
        self._pieces: Deque[Any] = collections.deque()
        self.size = 0
        self._gather = gather

    def append(self, data: Any) -> None:
        size = len(data)
        if not size:
            return
        pieces = self._pieces
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
        pieces = self._pieces
        if len(pieces) == 1:
            sent = sock.send(pieces[0])
            if sent == self.size:
                pieces.clear()
                self.size = 0
                return sent
        elif self._gather:
            sent = sock.sendmsg(list(itertools.islice(pieces, _MAX_GATHER)))
        else:
            sent = sock.send(pieces[0])
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
        return sent


def _immutable(data: Any) -> bool:
    """``bytes``, or a memoryview of ``bytes`` (the rest of a partial send)."""
    return type(data) is bytes or (type(data) is memoryview and type(data.obj) is bytes)


class Cycle:
    """What a connection expects of the object serving one request.

    ``asgi.HTTPCycle`` and ``wsgi.WSGICycle`` implement it; the methods are
    notifications and must not raise.
    """

    __slots__ = ()

    def on_data_received(self) -> None:
        """More request bytes arrived (``receive_body()`` may have news)."""

    def on_drained(self) -> None:
        """The write buffer fell below the low-water mark."""

    def on_disconnect(self) -> None:
        """The client is gone; later writes are dropped."""


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
        self.timeouts_s: Dict[State, float] = {
            HANDSHAKE: config.timeout_request_head_s,
            IDLE: config.timeout_keep_alive_s,
            READING_HEAD: config.timeout_request_head_s,
            CLOSING: config.timeout_graceful_shutdown_s,
        }
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
        # Called as trace(conn, old_state, new_state) on every transition
        # when --trace is on (see trace.py).
        self.trace: Optional[Callable[["Connection", State, State], None]] = None
        # Called as on_response(conn, request, writer, duration_s) after
        # every response; the worker sets it when the access log is on.
        self.on_response: Optional[Callable[..., None]] = None

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
        "_interest", "_write_buffer", "_dispatching", "_flush_queued", "_file",
    )

    def __init__(self, loop: Any, sock: socket.socket, server: ServerState,
                 client: Optional[Tuple[str, int]] = None,
                 local: Optional[Tuple[str, int]] = None) -> None:
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
        self._interest = EVENT_READ
        # sendmsg(): plain sockets only (ssl.SSLSocket refuses it).
        self._write_buffer = WriteQueue(server.ssl_context is None and hasattr(sock, "sendmsg"))
        # True while _serve_buffered() runs, so that a response finished
        # inside it does not start the next pipelined request recursively.
        self._dispatching = False
        # True from the end of _serve_buffered() until the loop calls flush().
        self._flush_queued = False
        # A FileTransfer queued behind the write buffer (send_file), or None.
        self._file: Optional[FileTransfer] = None
        server.connections.add(self)
        loop.add_connection(sock, self, EVENT_READ)

    # -- state ----------------------------------------------------------------

    def _set_state(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError("illegal transition %s -> %s" % (self.state, new))
        old, self.state = self.state, new
        trace = self.server.trace
        if trace is not None:
            trace(self, old, new)
        timeout = self.server.timeouts_s.get(new)
        # RUNNING has no deadline: how long the app takes is its business.
        self.deadline = _monotonic() + timeout if timeout else 0.0

    def _update_interest(self) -> None:
        state = self.state
        if state is CLOSED or self._dispatching or self._flush_queued:
            # While dispatching, writes are queued, not tried: no EVENT_WRITE
            # yet; _serve_buffered (or flush) settles the interest when done.
            return
        wanted = EVENT_WRITE if self._write_buffer.size or self._file is not None else 0
        # Read while there is room: above the high-water mark the client
        # waits (TCP flow control) until the application consumes the body.
        if state is not CLOSING and self.parser.buffered_bytes < self.server.read_high_bytes:
            # An upgraded protocol says itself whether it wants more bytes.
            if state is not UPGRADED or self.cycle is None or self.cycle.reading:
                wanted |= EVENT_READ
        if wanted != self._interest:
            self._interest = wanted
            self.loop.set_interest(self.sock, self, wanted)

    # -- the loop's callbacks ---------------------------------------------------

    def on_readable(self) -> None:
        if self.state is HANDSHAKE:
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
        state = self.state
        if state is UPGRADED:
            self.cycle.on_data(data)
            return
        self.parser.feed(data)
        if state is RUNNING:
            cycle = self.cycle
            if cycle is not None:
                cycle.on_data_received()
            self._update_interest()
        elif state is IDLE or state is READING_HEAD:
            self._serve_buffered()

    def on_writable(self) -> None:
        if self.state is HANDSHAKE:
            self._handshake()
            return
        buffer = self._write_buffer
        if not buffer.size:
            if self._file is not None:
                self._send_file_part()
                return
            self._update_interest()
            return
        try:
            buffer.send(self.sock)
        except TRY_AGAIN:
            return
        except OSError as exc:
            self._peer_gone(exc)
            return
        if buffer.size:
            if self.cycle is not None and buffer.size <= self.server.write_low_bytes:
                self.cycle.on_drained()
            return
        if self.state is CLOSING:
            self.close()
            return
        self._update_interest()
        if self.cycle is not None:
            self.cycle.on_drained()

    def on_timeout(self) -> None:
        """The deadline of the current state passed (the worker's tick)."""
        state = self.state
        if state is READING_HEAD:
            self._reject(RequestTimeout("no complete request head in %ss"
                                        % self.server.timeouts_s[READING_HEAD]))
        elif state is IDLE or state is CLOSING or state is HANDSHAKE:
            self.close()

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
            self.close()
            return
        else:
            self._set_state(IDLE)
            wanted = EVENT_READ
        if wanted != self._interest:
            self._interest = wanted
            self.loop.set_interest(self.sock, self, wanted)

    # -- requests in ----------------------------------------------------------------

    def _serve_buffered(self) -> None:
        """Start every request whose head is complete, one at a time.

        An application that answers at once finishes inside ``handler()``;
        the loop then goes on to the next pipelined request, in order.
        """
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self.state is IDLE or self.state is READING_HEAD:
                parser = self.parser
                try:
                    event = parser.next_event()
                except HTTPError as exc:
                    self._reject(exc)
                    return
                if event is NEED_DATA:
                    if self.state is IDLE and parser.buffered_bytes:
                        self._set_state(READING_HEAD)
                    return
                self._begin(event)
        finally:
            self._dispatching = False
            if self._write_buffer.size and not self._flush_queued:
                # What the requests above wrote leaves in one send(), after
                # the loop has read every socket that was ready with this one.
                if self.loop.flush_after_events(self):
                    self._flush_queued = True
                else:
                    self.on_writable()
            self._update_interest()

    def flush(self) -> None:
        """Send what ``_serve_buffered`` queued (the loop calls it)."""
        self._flush_queued = False
        if self.state is not CLOSED:
            self.on_writable()
            if self._write_buffer.size:
                # The kernel took part of it: ask for EVENT_WRITE (on_writable
                # settled the interest itself if it sent everything).
                self._update_interest()

    def _begin(self, request: Request) -> None:
        server = self.server
        if server.draining:
            request.keep_alive = False
        self.request = request
        self.writer = ResponseWriter(request)
        self._set_state(RUNNING)
        if server.on_response is not None:
            self.started_at = _monotonic()
        server.requests_served += 1
        if server.limit_concurrency is not None and not server.admit(self):
            # Refused without calling the app, after the head is read so the
            # client sees the 503 (closing an unread socket would reset it).
            self.respond_error(503, "too many requests in flight", RETRY_AFTER)
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
        request = self.request
        if request is None or self.state is not RUNNING:
            return None
        if request.expect_continue:
            # RFC 9110 §10.1.1: only now that the app wants the body.
            request.expect_continue = False
            if self.writer is not None and not self.writer.started:
                self.write(CONTINUE)
        try:
            event = self.parser.next_event()
        except HTTPError as exc:
            self._reject(exc)
            return None
        if event is NEED_DATA:
            return None
        if event.__class__ is Data:
            self._update_interest()
        return event

    def upgrade(self, protocol: Protocol) -> bytes:
        """Hand the socket to another protocol after a 101 response.

        Returns the bytes the client already sent past the request head
        (they belong to the new protocol).  From now on reads go to
        ``protocol.on_data``; write with ``write()``; end with
        ``close_after_flush()`` or ``close()``.
        """
        self._set_state(UPGRADED)
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
        """
        if type(body) is bytes and len(body) >= LARGE_WRITE_BYTES:
            # The head alone, then the body: joining them would copy it.
            self.respond(status, headers)
            return self.send_body(body, end)
        head = self.writer.respond(status, headers, self.server.date_server, body, end)
        if self.state is RUNNING:
            self.write(head)
        if end:
            self._finish_response()
        return self._write_buffer.size > self.server.write_high_bytes

    def send_body(self, body: bytes, end: bool = False) -> bool:
        """Send more body (framed by the writer); ``end`` finishes the response."""
        writer = self.writer
        data = writer.body(body) if body else b""
        if end:
            last = writer.end()
            if last:
                # Only the last chunk: never copy a body to add b"" to it
                # (CPython would not, PyPy would).
                data = data + last if data else last
        if data and self.state is RUNNING:
            self.write(data)
        if end:
            self._finish_response()
        return self._write_buffer.size > self.server.write_high_bytes

    def respond_error(self, status: int, detail: str = "", fields: bytes = b"") -> None:
        """Answer with a server-made error page and close after it; ``fields``
        are extra header lines (``name: value\r\n`` each)."""
        if self.state is RUNNING:
            self.write(error_response(status, self.server.date_server + fields, detail))
            self.request.keep_alive = False
            self._close_after_flush()
        self.cycle = None

    def write(self, data: bytes) -> None:
        """Send now if nothing is queued; queue what the kernel did not take.

        While ``_serve_buffered`` runs, writes are only queued: it sends them
        when it is done, so that the answers to pipelined requests leave in
        one ``send()`` (16 pipelined requests: one system call, not 16).
        """
        buffer = self._write_buffer
        if buffer.size or self._dispatching:
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

    @property
    def write_buffer_bytes(self) -> int:
        return self._write_buffer.size

    def _finish_response(self) -> None:
        request, writer, server = self.request, self.writer, self.server
        server.in_flight.discard(self)
        if server.on_response is not None:
            server.on_response(self, request, writer, _monotonic() - self.started_at)
        self.cycle = None
        if self.state is not RUNNING:
            return
        keep_alive = writer.keep_alive and request.keep_alive and not server.draining
        # A body the app did not read is skipped if it is all here, but not
        # one the client holds back until it gets 100 Continue.
        if not (keep_alive and self.parser.next_request(skip_body=not request.expect_continue)):
            self._close_after_flush()
            return
        self._set_state(IDLE)
        if self._dispatching:
            return   # _serve_buffered's loop goes on with the next request
        if self.parser.buffered_bytes:
            # A pipelined request is waiting.  We are inside the app's task
            # step here, and a task cannot start inside another's step:
            # serve it from the loop.
            self.loop.call_soon(self._serve_buffered)
        self._update_interest()

    def close_after_flush(self) -> None:
        """Close once the write buffer is sent (bounded by the CLOSING deadline)."""
        self._close_after_flush()

    def _close_after_flush(self) -> None:
        if self.state is CLOSED:
            return
        if self._write_buffer.size:
            self._set_state(CLOSING)
            self._update_interest()
        else:
            self.close()

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
        zero_copy = _HAS_SENDFILE and not isinstance(self.sock, ssl.SSLSocket)
        try:
            fd = file.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
            zero_copy = False
        self._file = FileTransfer(file, fd, offset, count, zero_copy, on_done)
        if self.state is not RUNNING:
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
        self._update_interest()
        transfer.on_done()

    # -- errors and endings ----------------------------------------------------------

    def _reject(self, exc: HTTPError) -> None:
        """Answer a client error with its status, then close (STYLE.md §7)."""
        state = self.state
        if state is RUNNING and self.writer is not None and self.writer.started:
            # The body went bad after the app began answering: just cut it.
            log.info("%s: %d %s (response already started)", _peer(self.client), exc.status, exc.detail)
            self._notify_disconnect()
            self.close()
            return
        if isinstance(exc, RequestTimeout) and state is IDLE:
            self.close()
            return
        log.info("%s: %d %s", _peer(self.client), exc.status, exc.detail)
        self.write(error_response(exc.status, self.server.date_server, exc.detail))
        if state is RUNNING:
            self._notify_disconnect()
        if self.state is not CLOSED:
            self._close_after_flush()

    def _peer_gone(self, exc: Optional[BaseException]) -> None:
        if exc is not None and not isinstance(exc, PEER_GONE) and exc.errno not in _GONE_ERRNOS:
            log.warning("%s: socket error %r", _peer(self.client), exc)
        else:
            log.debug("%s: peer gone (%s)", _peer(self.client), exc or "EOF")
        self._notify_disconnect()
        self.close()

    def _notify_disconnect(self) -> None:
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None
            cycle.on_disconnect()

    def close(self) -> None:
        """Close the socket now; pending output is dropped."""
        if self.state is CLOSED:
            return
        old, self.state = self.state, CLOSED
        trace = self.server.trace
        if trace is not None:
            trace(self, old, CLOSED)
        self.deadline = 0.0
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
        """Graceful stop: close if idle; otherwise close after this response.

        A connection that has not sent its first request is left to send it
        within its deadline (the answer says ``connection: close``): it was
        accepted a moment ago, and its client may be writing right now.
        """
        if self.request is None and (self.state is IDLE or self.state is HANDSHAKE):
            return
        if self.state is IDLE or self.state is HANDSHAKE:
            self.close()
        elif self.state is READING_HEAD and not self.parser.buffered_bytes:
            self.close()
        elif self.state is UPGRADED and self.cycle is not None:
            self.cycle.on_shutdown()

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

