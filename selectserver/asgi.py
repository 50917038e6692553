"""Chapter 4: the ASGI 3 ``http`` cycle (ASGI spec 2.4).

For each request the connection calls ``handler(conn, request)``, which
builds the scope, makes an ``HTTPCycle`` and starts the app's coroutine in
an ``AppTask`` -- the first step runs at once.  ``receive()`` and ``send()``
are coroutines that return without suspending whenever they can: body
bytes already buffered are handed over at once, and a response is written
to the socket inside ``send()`` when the socket has room.  Only an empty
read buffer or a full write buffer makes the app wait, on a future that the
connection's notifications resolve.

This module knows the ASGI message formats and nothing about sockets: all
I/O goes through the connection's ``receive_body``/``respond``/``send_body``.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import unquote

from .connection import Connection, Cycle
from .errors import InvalidResponse
from .http11.events import Data, Request, split_target
from .proxy import FIELDS as PROXY_FIELDS, forwarded_to_scope
from .proxy import from_config as trusted_proxies, resolve as resolve_proxy
from . import task as task_module
from .task import _PENDING, AppTask

log = logging.getLogger("selectserver.error")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}

# Method tokens are decoded once, not per request.
_METHODS = {m.encode(): m for m in
            ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")}

_BODY_BATCH_BYTES = 64 * 1024

# Where the response stands, as far as the application is concerned.
_START, _BODY, _DONE = "start", "body", "done"


class ClientDisconnected(OSError):
    """``send()`` after the client went away (ASGI spec 2.4: an OSError)."""


class HTTPCycle(Cycle, AppTask):
    """One request/response exchange between an ASGI app and a connection,
    and the task that steps the app's coroutine (``HTTPCycle()`` calls the
    app: what an app raises instead of returning a coroutine comes from it).
    """

    # region: one-object
    # A cycle that is its own task: one object per request, not an
    # HTTPCycle and an AppTask that point at each other.  Its __init__ sets
    # the task's fields too (no second object built, no bound on_done and
    # after_step stored), and the task's two hooks are methods:
    # _ended() is what the exchange does when the app is done, _stepped()
    # serves the next pipelined request (see benchmarks/RESULTS.md, issue 14).
    # endregion: one-object

    __slots__ = ("conn", "scope", "phase", "disconnected", "status",
                 "headers", "_body_done", "_receiving", "_sending")

    def __init__(self, conn: Connection, scope: Dict[str, Any], app: Any,
                 context: contextvars.Context) -> None:
        self.conn = conn
        self.scope = scope
        self.phase = _START
        self.disconnected = False
        self.status = 0
        self.headers: Any = ()
        self._body_done = False
        # Futures the app may be waiting on, at most one each (two tasks of
        # one app may wait at once, e.g. Starlette streams a response while
        # it listens for http.disconnect): ``_receiving`` for body bytes or
        # the end of the exchange, ``_sending`` for room in the write buffer.
        self._receiving: Any = None
        self._sending: Any = None
        # The task's fields, as AppTask.__init__ sets them; its _on_done
        # and _after_step stay unset: only AppTask's _ended() and
        # _stepped() read them, and both are overridden below.
        self._loop = conn.loop
        self._coro = coro = app(scope, self.receive, self.send)
        try:
            self._steps = coro.__await__()
        except AttributeError:
            self._steps = coro   # a generator-based coroutine
        self._context = context
        self._state = _PENDING
        self._exception = None
        self._fut_waiter = None
        self._must_cancel = False
        self._cancel_message = None
        self._cancel_requests = 0
        self._callbacks = None
        self._name = None

    # -- receive ----------------------------------------------------------------

    # region: receive
    async def receive(self) -> Dict[str, Any]:
        while True:
            if self.disconnected or self.phase is _DONE:
                return {"type": "http.disconnect"}
            if not self._body_done:
                # Hand over everything already buffered in one message, so
                # a small POST is one receive() with more_body False; here,
                # not in a method of its own (E -324 instructions,
                # benchmarks/RESULTS.md).
                conn = self.conn
                # "A whole body in one call": a Content-Length body all here
                # (the usual small POST) and its end, without a Data and an
                # EndOfMessage (E -4,560 instructions per request, callgrind,
                # CPython 3.11; a receive() without a body pays one call more).
                whole = conn.receive_whole_body()
                if whole is not None:
                    self._body_done = True
                    return {"type": "http.request", "body": whole, "more_body": False}
                event = conn.receive_body()
                if event is not None:
                    body = b""
                    if event.__class__ is Data:
                        body = event.data
                        event = conn.receive_body()
                        if event.__class__ is Data and len(body) < _BODY_BATCH_BYTES:
                            body, event = self._join_body(body, event)
                        # Else the usual body, one piece then its end, costs
                        # no list and no join (E: -1,300 instructions).
                    more = event is None or event.__class__ is Data
                    if not more:
                        self._body_done = True
                    return {"type": "http.request", "body": body, "more_body": more}
            # Nothing to hand over: wait for bytes, the response's end or
            # the client leaving.
            self._receiving = self.conn.loop.create_future()
            try:
                await self._receiving
            finally:
                self._receiving = None
    # endregion: receive

    def _join_body(self, body: bytes, event: Data) -> Tuple[bytes, Any]:
        """``body`` and the pieces after it that are here, up to a batch;
        returns the joined body and the event that ended the batch."""
        pieces = [body]
        size = len(body)
        while event.__class__ is Data:   # None, no more here yet, is not
            pieces.append(event.data)
            size += len(event.data)
            if size >= _BODY_BATCH_BYTES:
                break
            event = self.conn.receive_body()
        return b"".join(pieces), event

    # -- send ------------------------------------------------------------------

    async def send(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.phase is not _BODY:
                raise RuntimeError(
                    "http.response.body before http.response.start" if self.phase is _START
                    else "http.response.body after the response completed")
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            # region: send-body
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not more:
                self.phase = _DONE
            conn = self.conn
            # `end` is passed by position: CPython 3.11 specializes a call
            # without keywords (with skip_body in _finish_response: -350
            # instructions per request, callgrind; RESULTS.md, issue 14).
            if self.status:
                status, self.status = self.status, 0
                try:
                    must_wait = conn.respond(status, self.headers, body, not more)
                except InvalidResponse as exc:
                    self.phase = _DONE
                    log.error("invalid response from ASGI app for %s: %s", _describe(self.scope), exc)
                    conn.respond_error(500)
                    raise
            else:
                must_wait = conn.send_body(body, not more)
            if not more:
                if self._receiving is not None:
                    # An app rarely waits in receive() while it answers: no
                    # call to wake nobody (one call fewer a request, see
                    # benchmarks/RESULTS.md).
                    self._wake_receiver()
            elif must_wait and not self.disconnected:
                self._sending = conn.loop.create_future()
                try:
                    await self._sending
                finally:
                    self._sending = None
            # endregion: send-body
        elif kind == "http.response.start":
            if self.phase is not _START:
                raise RuntimeError("http.response.start sent twice")
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            status = message["status"]
            if status.__class__ is not int or not 200 <= status <= 999:
                # 1xx would need informational-response support; refuse loudly.
                raise RuntimeError("invalid status in http.response.start: %r" % (status,))
            self.status = status
            self.headers = message.get("headers", ())
            self.phase = _BODY
        elif kind == "http.response.pathsend":
            if self.phase is not _BODY:
                raise RuntimeError("http.response.pathsend before http.response.start")
            await self._send_file(message["path"])
        else:
            raise RuntimeError("unexpected ASGI message type %r" % (kind,))

    async def _send_file(self, path: str) -> None:
        with open(path, "rb") as file:
            while True:
                chunk = file.read(_BODY_BATCH_BYTES)
                await self.send({"type": "http.response.body", "body": chunk,
                                 "more_body": bool(chunk)})
                if not chunk:
                    return

    # -- the connection's notifications --------------------------------------------

    def _wake_receiver(self) -> None:
        waiter = self._receiving
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_sender(self) -> None:
        waiter = self._sending
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # send() runs in the app's task step (see Cycle).
    in_app_step = True

    def on_data_received(self) -> None:
        self._wake_receiver()

    def on_drained(self) -> None:
        self._wake_sender()

    def on_disconnect(self) -> None:
        self.disconnected = True
        if self.phase is not _DONE:
            # The access log has a line for a response cut short, with what
            # was sent.
            self.conn.log_response()
        self._wake_receiver()
        self._wake_sender()

    # -- the end ------------------------------------------------------------------

    def _stepped(self) -> None:
        # A later step of the app may have ended the response: the next
        # pipelined request starts now, outside the step.
        self.conn.continue_serving()

    def _ended(self) -> None:
        error = self._exception
        if error is None and self.phase is _DONE:
            return   # the usual end: the app answered whole and returned
        conn = self.conn
        # region: release-exception
        # The task does not keep the exception: its traceback holds the
        # app's frames, which hold this cycle (receive, send) and what the
        # app had open -- a streaming response's async generator, whose
        # finally would otherwise wait for a garbage collection.
        self._exception = None
        # endregion: release-exception
        if error is not None:
            if self.disconnected and _client_left(error):
                # A client that leaves is normal (STYLE.md §7: peer gone).
                # repr() now: a record that kept the exception (a log
                # capture does) would keep all the above alive.
                log.debug("ASGI application stopped by the client leaving (%s): %s",
                          _describe(self.scope), repr(error))
            else:
                log.error("Exception in ASGI application (%s)", _describe(self.scope),
                          exc_info=(type(error), error, error.__traceback__))
        elif self.phase is not _DONE and not self.disconnected:
            log.error("ASGI app returned without %s (%s)",
                      "starting a response" if self.phase is _START else "completing the response",
                      _describe(self.scope))
        # region: failed-response
        if self.phase is _START:
            self.phase = _DONE
            conn.respond_error(500)
        elif self.phase is _BODY:
            # The head is (or may be) on the wire: the only honest signal left
            # is a connection closed before the body's framing says it ends
            # (after what the app did send).
            self.phase = _DONE
            if conn.cycle is self:
                conn.cycle = None
                conn.close_after_flush()
        # endregion: failed-response


# region: client-left
def _client_left(error: BaseException, depth: int = 0) -> bool:
    """Whether ``error`` comes from the client leaving: our own
    ``ClientDisconnected``, a connection error, or a framework's exception
    raised because of it (Starlette's ``ClientDisconnect``), also inside an
    exception group (all of its members) or as the cause of another."""
    if isinstance(error, ConnectionError) or type(error).__name__ in _CLIENT_LEFT_NAMES:
        return True
    if depth > 8:
        return False
    members = getattr(error, "exceptions", None)
    if isinstance(members, tuple) and members:
        return all(_client_left(member, depth + 1) for member in members)
    cause = error.__cause__ or error.__context__
    return cause is not None and _client_left(cause, depth + 1)
# endregion: client-left


# Exceptions frameworks raise when the client left (the name is all we may
# know of them: we import no framework).
_CLIENT_LEFT_NAMES = frozenset(("ClientDisconnected", "ClientDisconnect"))


def make_handler(app: Any, config: Any, state: Optional[Dict[str, Any]] = None,
                 upgrade: Optional[Callable[..., bool]] = None
                 ) -> Callable[[Connection, Request], None]:
    """The connection's request handler for ASGI 3 ``app``.

    ``upgrade(app, conn, request, scope)``, when given, sees each request
    that asks to switch protocols (it has an ``Upgrade`` field) first and
    returns True when it served it (the websocket chapter's hook).
    """
    root_path = config.root_path
    root_path_bytes = root_path.encode("utf-8")
    lifespan_state = state
    trusted = trusted_proxies(config)
    # Each app task runs in a copy of this context, not of whatever task
    # happened to end the previous response (no contextvars leak between
    # requests).
    base_context = contextvars.copy_context()

    # region: handle
    def handle(conn: Connection, request: Request) -> None:
        # The http scope (ASGI spec 2.4), built here rather than in a
        # function of its own: one call fewer per request (A -387
        # instructions, benchmarks/RESULTS.md).
        target = request.target
        paths = _TARGETS.get(target)
        if paths is None:
            paths = _paths_of(target)
        path, raw_path, query_string = paths
        method = _METHODS.get(request.method) or request.method.decode("ascii")
        scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": request.http_version,
            "server": conn.local,
            "client": conn.client,
            "scheme": conn.server.scheme,
            "method": method,
            "root_path": root_path,
            "path": root_path + path if root_path else path,
            "raw_path": root_path_bytes + raw_path if root_path else raw_path,
            "query_string": query_string,
            "headers": request.headers,
            "extensions": {"http.response.pathsend": {}},
        }
        if trusted is not None:
            # Only a request that carries a proxy field calls resolve(),
            # which reads the fields and asks whether the peer is a trusted
            # proxy: the usual request costs a walk over its field names
            # and no call (-900 instructions per request; before, one call
            # and no trust question: two calls fewer; benchmarks/RESULTS.md).
            for name, _ in request.headers:
                if name in PROXY_FIELDS:
                    forwarded = resolve_proxy(request.headers, trusted, conn.client)
                    if forwarded is not None:
                        forwarded_to_scope(scope, forwarded)
                    break
        if lifespan_state is not None:
            scope["state"] = lifespan_state.copy()
        if upgrade is not None and request.upgrade and upgrade(app, conn, request, scope):
            return
        context = base_context.copy()
        try:
            cycle = HTTPCycle(conn, scope, app, context)
        except Exception:
            log.exception("Exception in ASGI application (%s)", _describe(scope))
            conn.respond_error(500)
            return
        conn.cycle = cycle
        # AppTask.start(), its two lines here: the app's first step runs
        # now, in its own context, one call fewer per request (A -283
        # instructions, benchmarks/RESULTS.md).
        if task_module.trace_start is not None:
            task_module.trace_start(cycle)
        context.run(cycle._step, None)
    # endregion: handle

    return handle


# Request-targets seen before, as (path, raw_path, query_string): clients
# ask for the same few targets again and again, and the split, the decode
# and the test for percent-escapes cost more than one lookup (measured in
# benchmarks/RESULTS.md, issue 14).  Cleared when full, so a client cannot
# grow it; long targets are not kept.
_TARGETS: Dict[bytes, Tuple[str, bytes, bytes]] = {}
_TARGETS_MAX = 256
_TARGET_MAX_BYTES = 256


def _paths_of(target: bytes) -> Tuple[str, bytes, bytes]:
    """(path, raw_path, query_string) of a request-target, remembered."""
    raw_path, query_string = split_target(target)
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = unquote(path)
    paths = (path, raw_path, query_string)
    if len(target) <= _TARGET_MAX_BYTES:
        if len(_TARGETS) >= _TARGETS_MAX:
            _TARGETS.clear()
        _TARGETS[target] = paths
    return paths


def _describe(scope: Dict[str, Any]) -> str:
    return "%s %s" % (scope.get("method"), scope.get("path"))


def asgi2_to_asgi3(app: Any) -> Callable[..., Any]:
    """Wrap an ASGI 2 (double-callable) app as ASGI 3."""

    async def app3(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        instance = app(scope)
        await instance(receive, send)

    return app3
