"""The ASGI ``websocket`` cycle (ASGI spec 2.4, with the denial response).

``serve(app, conn, request, scope)`` is the ASGI handler's hook for
``GET`` requests: when the request asks for a websocket it checks the
handshake (answering 400/426 itself when it is not one), starts the app
with a ``websocket`` scope and returns True.

The app first receives ``websocket.connect``.  It answers with
``websocket.accept`` (we send ``101`` and the connection hands its socket
to this cycle), ``websocket.close`` (``403``), or a denial response
(``websocket.http.response.start``/``.body``, sent as plain HTTP).  After
the accept, bytes from the socket go through ``frames.FrameParser`` and
messages queue for ``receive()``; ``send()`` writes frames at once.

The phases of one cycle::

    HANDSHAKE ──accept──> OPEN ──close sent──> CLOSING ──close received──> CLOSED
        │  └──denial──> RESPONSE ──body done──> CLOSED     (or on EOF, error, timeout)
        └──close/error──> CLOSED (403/500)

Backpressure both ways: ``send()`` waits while the connection holds more
than ``write_high_bytes`` unsent, and the socket is not read while more
than ``MAX_QUEUE`` messages wait for the app.  Timers bound every wait on
the client: keep-alive pings expect a pong, a Close we send expects one
back.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Deque, Dict, Optional, Tuple

from ..asgi import ClientDisconnected
from ..connection import Connection, Protocol
from ..errors import InvalidResponse
from ..http11.events import Request
from ..task import AppTask
from .frames import (NEED_DATA, FrameParser, FrameWriter, Message, Ping, Pong, ProtocolError,
                     valid_close_code)
from .handshake import (HandshakeError, accept_headers, negotiate_deflate, read_handshake,
                        upgrade_requested)

log = logging.getLogger("selectserver.error")

# Stop reading the socket while this many messages wait for the app's
# receive(); read again once it has taken them down to RESUME_QUEUE.
MAX_QUEUE = 16
RESUME_QUEUE = 4

# How long we wait for the client's Close after sending ours (RFC 6455
# §7.1.1 lets the server close TCP once it gives up).
CLOSE_TIMEOUT_S = 10.0

# RFC 6455 §7.4.1: "abnormal closure", what the app is told when the TCP
# connection ended without a Close frame.
ABNORMAL_CLOSURE = 1006

_HANDSHAKE, _RESPONSE, _OPEN, _CLOSING, _CLOSED = (
    "handshake", "response", "open", "closing", "closed")


def upgrade_handler(config: Any) -> Optional[Callable[..., bool]]:
    """The hook for ``asgi.make_handler``: ``serve``, or None with ``--ws none``."""
    return None if config.ws == "none" else serve


def serve(app: Any, conn: Connection, request: Request, scope: Dict[str, Any]) -> bool:
    """Serve ``request`` as a websocket if it asks to be one.

    Returns False when the request does not ask to upgrade to websocket
    (the caller serves it as HTTP).  ``scope`` is the request's ``http``
    scope; it becomes the ``websocket`` scope.
    """
    if not upgrade_requested(request.headers):
        return False
    try:
        handshake = read_handshake(request)
    except HandshakeError as exc:
        log.info("%s: %d %s", _peer(conn), exc.status, exc.detail)
        _refuse(conn, exc)
        return True
    deflate = extensions = None
    if conn.server.config.ws_per_message_deflate and handshake.extension_offers:
        deflate, extensions = negotiate_deflate(handshake.extension_offers)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
    del scope["method"]
    scope["subprotocols"] = handshake.subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    cycle = WebSocketCycle(conn, scope, handshake.key, FrameParser(
        conn.server.config.ws_max_size_bytes, deflate), FrameWriter(deflate), extensions)
    conn.cycle = cycle
    try:
        coro = app(scope, cycle.receive, cycle.send)
    except Exception:
        log.exception("Exception in ASGI application (websocket %s)", scope["path"])
        cycle.phase = _CLOSED
        conn.respond_error(500)
        return True
    task = AppTask(conn.loop, coro, cycle.on_app_done, None, conn.continue_serving)
    cycle.task = task
    task.start()
    return True


def _refuse(conn: Connection, exc: HandshakeError) -> None:
    body = exc.detail.encode("utf-8", "replace")
    headers = list(exc.headers) + [(b"content-type", b"text/plain; charset=utf-8"),
                                   (b"content-length", b"%d" % len(body))]
    conn.respond(exc.status, headers, body, end=True)


class WebSocketCycle(Protocol):
    """One websocket between an ASGI app and a connection."""

    # A denial response is sent from the app's task step (see Cycle).
    in_app_step = True

    __slots__ = (
        "conn", "scope", "task", "phase", "parser", "writer", "reading",
        "_key", "_extensions", "_connect_sent", "_inbox", "_disconnect",
        "_receiving", "_sending", "_status", "_headers",
        "_ping_handle", "_pong_handle", "_close_handle",
    )

    def __init__(self, conn: Connection, scope: Dict[str, Any], key: bytes,
                 parser: FrameParser, writer: FrameWriter, extensions: Optional[bytes]) -> None:
        self.conn = conn
        self.scope = scope
        self.task: Optional[AppTask] = None
        self.phase = _HANDSHAKE
        self.parser = parser
        self.writer = writer
        # The connection reads from the socket only while this is True.
        self.reading = True
        self._key = key
        self._extensions = extensions
        self._connect_sent = False
        self._inbox: Deque[Message] = collections.deque()
        # (code, reason) once the websocket is over, for websocket.disconnect.
        self._disconnect: Optional[Tuple[int, str]] = None
        # Futures the app's tasks wait on: for a message, for room to write.
        self._receiving: Any = None
        self._sending: Any = None
        self._status = 0
        self._headers: Any = ()
        self._ping_handle: Any = None
        self._pong_handle: Any = None
        self._close_handle: Any = None

    # -- receive -------------------------------------------------------------------------

    async def receive(self) -> Dict[str, Any]:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            inbox = self._inbox
            if inbox:
                data = inbox.popleft().data
                if not self.reading and len(inbox) <= RESUME_QUEUE:
                    self._resume_reading()
                if data.__class__ is str:
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
            disconnect = self._disconnect
            if disconnect is not None:
                return {"type": "websocket.disconnect", "code": disconnect[0],
                        "reason": disconnect[1]}
            waiter = self._receiving
            if waiter is None:
                waiter = self._receiving = self.conn.loop.create_future()
            await waiter

    # -- send -----------------------------------------------------------------------------

    async def send(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self.phase is not _OPEN:
                self._refuse_send(kind)
            text = message.get("text")
            if text is not None:
                if text.__class__ is not str:
                    raise TypeError("websocket.send text must be str, not %s" % type(text).__name__)
                data = text
            else:
                data = message.get("bytes")
                if data is None:
                    raise RuntimeError("websocket.send needs text or bytes")
            conn = self.conn
            conn.write(self.writer.message(data))
            if conn.write_buffer_bytes > conn.server.write_high_bytes:
                await self._drained()
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._close(message.get("code") or 1000, message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            if self.phase is not _HANDSHAKE:
                self._refuse_send(kind)
            status = message["status"]
            if status.__class__ is not int or not 100 <= status <= 999 or status == 101:
                raise RuntimeError("invalid status in %s: %r" % (kind, status))
            self._status = status
            self._headers = message.get("headers", ())
            self.phase = _RESPONSE
        elif kind == "websocket.http.response.body":
            if self.phase is not _RESPONSE:
                self._refuse_send(kind)
            await self._send_response_body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError("unexpected ASGI message type %r" % (kind,))

    def _refuse_send(self, kind: str) -> None:
        phase = self.phase
        if phase is _CLOSING or phase is _CLOSED:
            raise ClientDisconnected("websocket closed")
        if phase is _HANDSHAKE:
            raise RuntimeError("%s before websocket.accept" % kind)
        if phase is _RESPONSE:
            raise RuntimeError("%s after a denial response started" % kind)
        raise RuntimeError("%s after websocket.accept" % kind)

    async def _drained(self) -> None:
        """Wait until the connection's write buffer drains (or it closes)."""
        while self.phase is _OPEN or self.phase is _RESPONSE:
            conn = self.conn
            if conn.write_buffer_bytes <= conn.server.write_low_bytes:
                return
            waiter = self._sending
            if waiter is None:
                waiter = self._sending = conn.loop.create_future()
            await waiter

    def _accept(self, message: Dict[str, Any]) -> None:
        if self.phase is not _HANDSHAKE:
            self._refuse_send("websocket.accept")
        if self._disconnect is not None:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        try:
            headers = accept_headers(self._key, message.get("subprotocol"), self._extensions,
                                     message.get("headers") or ())
            head = conn.writer.head(101, headers, conn.server.date_server)
        except (ValueError, InvalidResponse) as exc:
            raise RuntimeError("invalid websocket.accept: %s" % exc) from None
        leftover = conn.upgrade(self)
        self.phase = _OPEN
        conn.write(head)
        on_response = conn.server.on_response
        if on_response is not None:
            # The access log's line for a websocket: its 101.
            on_response(conn, conn.request, conn.writer, conn.loop.time() - conn.started_at)
        interval = conn.server.config.ws_ping_interval_s
        if interval:
            self._ping_handle = conn.loop.call_later(interval, self._on_ping_due)
        if leftover:
            self.on_data(leftover)

    def _close(self, code: int, reason: str) -> None:
        phase = self.phase
        if phase is _HANDSHAKE:
            # ASGI: a close before the accept is a refusal, 403.
            self._finish(ABNORMAL_CLOSURE, "")
            self.conn.respond_error(403)
        elif phase is _OPEN:
            if code.__class__ is not int or not valid_close_code(code):
                raise RuntimeError("invalid close code %r" % (code,))
            self._send_close(code, reason)
        elif phase is _RESPONSE:
            raise RuntimeError("websocket.close after a denial response started")
        # Closing or closed already: nothing left to do.

    async def _send_response_body(self, body: bytes, more: bool) -> None:
        conn = self.conn
        status, self._status = self._status, 0
        if not more:
            self._finish(ABNORMAL_CLOSURE, "")
        if status:
            try:
                conn.respond(status, self._headers, body, end=not more)
            except InvalidResponse as exc:
                log.error("invalid denial response from ASGI app for websocket %s: %s",
                          self.scope["path"], exc)
                self._finish(ABNORMAL_CLOSURE, "")
                conn.respond_error(500)
                raise
        else:
            conn.send_body(body, end=not more)
        if more and conn.write_buffer_bytes > conn.server.write_high_bytes:
            await self._drained()

    # -- the socket's side -----------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self.phase is _CLOSED:
            return
        self.parser.feed(data)
        self._process()

    def _process(self) -> None:
        """Turn buffered bytes into events until none is left or the queue is full."""
        parser = self.parser
        inbox = self._inbox
        received = False
        conn = self.conn
        high_bytes = conn.server.write_high_bytes
        # A write below may find the peer gone, which closes the cycle.
        while self.phase is not _CLOSED:
            if len(inbox) >= MAX_QUEUE or conn.write_buffer_bytes > high_bytes:
                # The app is behind, or the client does not read what we
                # send (pongs to a ping flood, say): let TCP flow control
                # slow the client down.
                if self.reading:
                    self.reading = False
                    self.conn.set_reading(False)
                break
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._fail(exc)
                return
            if event is NEED_DATA:
                break
            kind = event.__class__
            if kind is Message:
                # After our Close, data is only drained (RFC 6455 §1.4).
                if self.phase is _OPEN:
                    inbox.append(event)
                    received = True
            elif kind is Ping:
                self.conn.write(self.writer.pong(event.payload))  # RFC 6455 §5.5.2
            elif kind is Pong:
                handle = self._pong_handle
                if handle is not None:
                    handle.cancel()
                    self._pong_handle = None
            else:
                self._on_close_frame(event)
                return
        if received:
            self._wake_receiver()

    def _resume_reading(self) -> None:
        """Parse what waited in the buffer, then read again if there is room."""
        self._process()
        conn = self.conn
        if (not self.reading and len(self._inbox) < MAX_QUEUE
                and conn.write_buffer_bytes <= conn.server.write_high_bytes
                and (self.phase is _OPEN or self.phase is _CLOSING)):
            self.reading = True
            conn.set_reading(True)

    def _on_close_frame(self, close: Any) -> None:
        if self.phase is _OPEN:
            # RFC 6455 §5.5.1: answer with a Close, echoing the code.
            self.conn.write(self.writer.close(close.code))
        self._finish(close.code, close.reason)
        # RFC 6455 §7.1.1: the server closes the TCP connection first.
        self.conn.close_after_flush()

    def _fail(self, exc: ProtocolError) -> None:
        """RFC 6455 §7.1.7: fail the connection, telling the client why."""
        log.info("%s: websocket closed: %d %s", _peer(self.conn), exc.code, exc.reason)
        if self.phase is _OPEN:
            self.conn.write(self.writer.close(exc.code, exc.reason))
        self._finish(exc.code, exc.reason)
        self.conn.close_after_flush()

    def _send_close(self, code: int, reason: str) -> None:
        conn = self.conn
        self.phase = _CLOSING
        self._cancel_timers()
        conn.write(self.writer.close(code, reason))
        self._close_handle = conn.loop.call_later(CLOSE_TIMEOUT_S, self._on_close_timeout)
        # Wake a sender waiting for the buffer to drain: it raises now.
        self._wake_sender()
        # Messages still queued will not be wanted; the client's Close may
        # be waiting behind them.
        self._inbox.clear()
        if not self.reading and self.phase is _CLOSING:
            self._resume_reading()

    def _on_close_timeout(self) -> None:
        self._close_handle = None
        if self.phase is _CLOSING:
            log.info("%s: no websocket Close from the client in %ss", _peer(self.conn),
                     CLOSE_TIMEOUT_S)
            self._finish(ABNORMAL_CLOSURE, "")
            self.conn.close()

    # -- keep-alive pings ---------------------------------------------------------------------

    def _on_ping_due(self) -> None:
        self._ping_handle = None
        if self.phase is not _OPEN:
            return
        conn = self.conn
        config = conn.server.config
        conn.write(self.writer.ping())
        if config.ws_ping_timeout_s and self._pong_handle is None:
            self._pong_handle = conn.loop.call_later(config.ws_ping_timeout_s, self._on_pong_timeout)
        self._ping_handle = conn.loop.call_later(config.ws_ping_interval_s, self._on_ping_due)

    def _on_pong_timeout(self) -> None:
        self._pong_handle = None
        if self.phase is not _OPEN:
            return
        log.info("%s: no pong in %ss; closing the websocket", _peer(self.conn),
                 self.conn.server.config.ws_ping_timeout_s)
        # A peer that does not answer pings will not answer a Close either.
        self._finish(1011, "keepalive ping timeout")
        self.conn.close()

    # -- the connection's notifications -----------------------------------------------------

    def on_data_received(self) -> None:
        """Bytes after the handshake request, before the accept: they wait
        in the HTTP parser's buffer until ``upgrade()`` hands them over."""

    def on_drained(self) -> None:
        self._wake_sender()
        if not self.reading and self.phase is not _CLOSED:
            self._resume_reading()

    def on_disconnect(self) -> None:
        self._finish(ABNORMAL_CLOSURE, "")

    def on_shutdown(self) -> None:
        """The server is stopping: RFC 6455 §7.4.1 1001, "going away"."""
        if self.phase is _OPEN:
            self._send_close(1001, "server shutting down")

    # -- the end ----------------------------------------------------------------------------

    def _finish(self, code: int, reason: str) -> None:
        """The websocket is over: remember why, stop the timers, wake the app."""
        if self._disconnect is None:
            self._disconnect = (code, reason)
        self.phase = _CLOSED
        self._cancel_timers()
        self._wake_receiver()
        self._wake_sender()

    def _cancel_timers(self) -> None:
        for name in ("_ping_handle", "_pong_handle", "_close_handle"):
            handle = getattr(self, name)
            if handle is not None:
                handle.cancel()
                setattr(self, name, None)

    def _wake_receiver(self) -> None:
        waiter, self._receiving = self._receiving, None
        _wake(waiter)

    def _wake_sender(self) -> None:
        waiter, self._sending = self._sending, None
        _wake(waiter)

    def on_app_done(self, task: AppTask) -> None:
        error = task._exception
        if error is not None and not (isinstance(error, ClientDisconnected)
                                      and self._disconnect is not None):
            log.error("Exception in ASGI application (websocket %s)", self.scope["path"],
                      exc_info=(type(error), error, error.__traceback__))
        phase = self.phase
        conn = self.conn
        if phase is _HANDSHAKE:
            if error is None:
                log.error("ASGI app returned without accepting or closing the websocket %s",
                          self.scope["path"])
            self._finish(ABNORMAL_CLOSURE, "")
            conn.respond_error(500)
        elif phase is _RESPONSE:
            if error is None:
                log.error("ASGI app returned without completing the denial response (%s)",
                          self.scope["path"])
            self._finish(ABNORMAL_CLOSURE, "")
            if conn.cycle is self:
                conn.cycle = None
                conn.abort()
        elif phase is _OPEN:
            # RFC 6455 §7.4.1: 1011, "an unexpected condition"; 1000 for an
            # app that simply returned.
            self._send_close(1011 if error is not None else 1000, "")


def _wake(waiter: Any) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _peer(conn: Connection) -> str:
    return "%s:%s" % conn.client if conn.client else "unix"
