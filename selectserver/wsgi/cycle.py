"""The WSGI cycle: one request, an app's thread on one side, the loop on the other.

The loop builds the cycle, collects the body (unless the app streams it),
and queues it for the pool; a pool thread calls the app and hands what it
says back to the loop (``LoopQueue``), which alone calls the connection.
Two streams cross between them, each bounded: the request body
(``WSGIInput``) and the response, whose pieces the app's thread hands over
only while the loop has room for them.

Where the cycle stands is one state, changed only by ``_advance()`` from the
table below.  Both threads change it (the app's thread as it answers, the
loop when the client leaves or a file is sent), so ``_advance`` holds the
cycle's lock; the input and the flow-control counters live under the same
lock, and the app's thread waits on one condition of it.  A client that
leaves moves the cycle to GONE before the input fails, so the app's thread
always knows why its read failed.

Invariant: an app's ``close()`` is called exactly once, on the app's thread,
whatever happens to the response or the client; HTTP framing is decided by
``http11.writer``, never here.
"""

from __future__ import annotations

import enum
import io
import logging
import os
import stat
import tempfile
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..connection import Connection, Cycle
from ..errors import InvalidResponse
from ..http11.events import Data, Request
from ..http11.writer import check_field_text, response_has_body, status_code, status_has_body
from .bridge import LoopQueue
from .files import FileWrapper
from .input import NO_BODY, ClientDisconnected, WSGIInput

log = logging.getLogger("selectserver.error")


class CycleState(enum.Enum):
    # Identity hash, as connection.State: the table is looked up per request.
    __hash__ = object.__hash__

    RECEIVING = "receiving the body"   # the loop collects it; no thread is held
    QUEUED = "queued"                  # waiting for a pool thread
    RUNNING = "running"                # the app runs; no head handed over yet
    STREAMING = "streaming"            # the head went out; body pieces follow
    SENDING_FILE = "sending a file"    # the loop sends a file; the thread waits
    DONE = "done"                      # the whole response went to the loop
    GONE = "gone"                      # the connection takes no more of it


class CycleEvent(enum.Enum):
    __hash__ = object.__hash__

    BODY_RECEIVED = "body received"    # loop: the whole body is in wsgi.input
    REFUSED = "refused"                # loop: the pool is full, 503
    STARTED = "started"                # thread: took the cycle from the queue
    HEAD = "head"                      # thread: handed the head (and a first piece)
    FILE = "file"                      # thread: handed a file to send
    ENDED = "ended"                    # thread: handed the end of the response
    FAILED = "failed"                  # thread: the app failed; 500 or a reset
    FILE_SENT = "file sent"            # loop: the file is out
    DISCONNECTED = "disconnected"      # loop: the client left, the head was
                                       # refused, or the loop stopped


RECEIVING, QUEUED, RUNNING, STREAMING, SENDING_FILE, DONE, GONE = CycleState
(BODY_RECEIVED, REFUSED, STARTED, HEAD, FILE, ENDED, FAILED, FILE_SENT,
 DISCONNECTED) = CycleEvent

# (state, event) -> next state.  GONE absorbs what the app's thread does
# afterwards: the thread learns of it from the state it gets back.
TRANSITIONS: Dict[Tuple[CycleState, CycleEvent], CycleState] = {
    (RECEIVING, BODY_RECEIVED): QUEUED,
    (RECEIVING, DISCONNECTED): GONE,
    (QUEUED, STARTED): RUNNING,
    (QUEUED, REFUSED): DONE,
    (QUEUED, DISCONNECTED): GONE,
    (RUNNING, HEAD): STREAMING,
    (RUNNING, FILE): SENDING_FILE,
    (RUNNING, ENDED): DONE,
    (RUNNING, FAILED): DONE,
    (RUNNING, DISCONNECTED): GONE,
    (STREAMING, FILE): SENDING_FILE,
    (STREAMING, ENDED): DONE,
    (STREAMING, FAILED): DONE,
    (STREAMING, DISCONNECTED): GONE,
    (SENDING_FILE, FILE_SENT): DONE,
    (SENDING_FILE, DISCONNECTED): GONE,
    (DONE, DISCONNECTED): GONE,
    (GONE, STARTED): GONE,
    (GONE, HEAD): GONE,
    (GONE, FILE): GONE,
    (GONE, ENDED): GONE,
    (GONE, FAILED): GONE,
    (GONE, DISCONNECTED): GONE,
}

# region: moves-by-state
# The same table, by state and then by event, for _advance(): two dict
# lookups cost less than building and hashing a (state, event) tuple, 56 ->
# 41 ns (timeit), twice a request: WSGI hello -430 instructions per request
# (callgrind, CPython 3.11; benchmarks/RESULTS.md, "the hand-off, leaner",
# issue 14).  TRANSITIONS stays the table that is read, drawn and
# tested; this is only its index.
_MOVES: Dict[CycleState, Dict[CycleEvent, CycleState]] = {state: {} for state in CycleState}
for (_state, _event), _new in TRANSITIONS.items():
    _MOVES[_state][_event] = _new
del _state, _event, _new
# endregion: moves-by-state

# Called as trace(cycle, old_state, event, new_state) after every move when
# --trace is on (trace.py), from whichever thread made it.
trace: Optional[Callable[["WSGICycle", CycleState, CycleEvent, CycleState], None]] = None


# What start_response() makes of what apps say, remembered: apps give the
# same status and the same few header fields on every response, and
# checking, encoding and classifying them cost 14.5k instructions for a
# status and two fields; looked up, 4.5k (benchmarks/RESULTS.md, "WSGI
# round two").  Only what passed the checks is kept; cleared when full.
# Pool threads share them: each get, set and clear is one dict operation,
# and two threads filling the same entry store equal values.
_STATUS_CODES: Dict[str, int] = {}
_FIELDS: Dict[Tuple[str, str], Tuple[Tuple[bytes, bytes], int]] = {}
_CACHE_MAX = 512
_CACHED_VALUE_MAX_CHARS = 256
# A field's framing: not a framing field, Transfer-Encoding (or a
# Content-Length that is not a number), or else the Content-Length itself.
NOT_FRAMING = -2
FRAMING = -1


def _status_code_of(status: str) -> int:
    code = status_code(status)
    if len(status) <= _CACHED_VALUE_MAX_CHARS:
        if len(_STATUS_CODES) >= _CACHE_MAX:
            _STATUS_CODES.clear()
        _STATUS_CODES[status] = code
    return code


def _field_of(field: Tuple[str, str]) -> Tuple[Tuple[bytes, bytes], int]:
    """A header field as the writer takes it, and its framing; remembered.

    TypeError for what is not a pair of str; InvalidResponse for a CR, LF or NUL.
    """
    name, value = field
    if name.__class__ is not str or value.__class__ is not str:
        raise TypeError("header names and values must be str, not %r" % ((name, value),))
    if not (name + value).isprintable():
        # Printable text has no CR, LF or NUL; the rest is checked
        # where the rule lives (a call per header cost 1k instructions).
        check_field_text(name, value)
    framing = NOT_FRAMING
    if len(name) in (14, 17):
        lowered = name.lower()
        if lowered == "content-length":
            framing = int(value) if value.isdigit() else FRAMING
        elif lowered == "transfer-encoding":
            framing = FRAMING
    known = ((name.encode("latin-1"), value.encode("latin-1")), framing)
    if len(value) <= _CACHED_VALUE_MAX_CHARS and field.__class__ is tuple:
        if len(_FIELDS) >= _CACHE_MAX:
            _FIELDS.clear()
        _FIELDS[field] = known
    return known


# region: heads-seen-before
# Whole heads as apps give them, (status, fields) -> what start_response()
# makes of them: (status code, the fields as the writer takes them, the
# app's Content-Length, the body bytes it still allows, whether the app
# frames the body).  An app answers with the same few heads again and
# again; a head seen before costs one tuple, one lookup and one unpacking
# instead of a lookup, a check and an append per field: start_response()
# 4,790 -> 3,270 instructions, 112 -> 37 bytecodes (callgrind, CPython
# 3.11; benchmarks/RESULTS.md, "WSGI, leaner", issue 14).  The fields are
# kept as a tuple nobody changes (the cycle adds its own Content-Length by
# making a new one; the app may change its list after the call without
# reaching us), and the writer takes that same tuple as it is, one tuple()
# less.
# Only heads that passed every check are kept, small ones only, cleared
# when full; pool threads share it as they share the caches above.
_HEADS: Dict[Tuple[Any, ...], Tuple[int, Tuple[Tuple[bytes, bytes], ...],
                                    Optional[int], int, bool]] = {}
_HEADS_MAX = 128
_HEAD_FIELDS_MAX = 16


def _head_of(status: str, fields: Tuple[Any, ...]
             ) -> Tuple[int, Tuple[Tuple[bytes, bytes], ...], Optional[int], int, bool]:
    """What ``start_response(status, fields)`` makes of a head, field by field;
    remembered when it may be.  Raises as ``start_response`` says."""
    code = _STATUS_CODES.get(status) if status.__class__ is str else None
    if code is None:
        code = _status_code_of(status)
    pairs = []
    content_length = None
    app_frames = False
    cacheable = len(fields) <= _HEAD_FIELDS_MAX and len(status) <= _CACHED_VALUE_MAX_CHARS
    for field in fields:
        try:
            known = _FIELDS.get(field)
        except TypeError:
            known = None   # unhashable (a list): _field_of says what is wrong
        if known is None:
            known = _field_of(field)
            # As _field_of keeps a field: a tuple, its value not long.
            cacheable = (cacheable and field.__class__ is tuple
                         and len(field[1]) <= _CACHED_VALUE_MAX_CHARS)
        pair, framing = known
        pairs.append(pair)
        if framing != NOT_FRAMING:
            app_frames = True
            if framing >= 0:
                content_length = framing
    head = (code, tuple(pairs), content_length,
            -1 if content_length is None else content_length, app_frames)
    if cacheable:
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[(status, fields)] = head
    return head
# endregion: heads-seen-before


class ResponseGone(Exception):
    """The response cannot go on (client gone, or the loop refused it)."""


class WSGICycle(Cycle):
    """One request served by a WSGI app.

    Methods named ``*_on_loop`` and the ``Cycle`` notifications run on the
    loop; ``run``, ``start_response`` and ``write`` on the app's thread.
    """

    __slots__ = (
        "conn", "request", "to_loop", "app", "environ", "input", "state", "lock", "_changed",
        "spool_bytes", "on_body",
        # the response as the app described it (the app's thread)
        "status", "headers", "content_length", "app_frames", "remaining",
        # a whole response's body, set before it goes to the loop (_respond_whole)
        "body",
        # flow control, under the lock
        "in_flight", "blocked",
    )

    def __init__(self, conn: Connection, app: Any, request: Request, to_loop: LoopQueue,
                 environ: Dict[str, Any], buffered: bool = False,
                 body: Optional[bytes] = None) -> None:
        self.conn = conn
        self.request = request
        self.to_loop = to_loop
        self.app = app
        self.environ = environ
        self.lock = threading.Lock()
        self._changed: Any = None      # a Condition of lock, made when a thread first waits
        # What only a body still to come needs is set only then, and the
        # write limit is read where a streamed response waits for room: the
        # usual request (no body, or all of it at the head) pays for neither
        # (benchmarks/RESULTS.md, "the WSGI environ and cycle, cheaper").
        if body is not None:
            # The whole body came with the head (body_at_head): nothing to
            # receive, nothing can fail.  The app reads a plain in-memory
            # file over the received bytes (read() of all of it hands back
            # those bytes, no copy); the cycle's side is the input that
            # is always at its end.  A plain io.BytesIO, not a subclass:
            # 55 instead of 146 ns to make (timeit), E -1,760 instructions
            # per request (callgrind; CPython 3.11; benchmarks/RESULTS.md,
            # "WSGI, leaner", issue 14).
            self.input = NO_BODY
            self.state = QUEUED
            environ["wsgi.input"] = io.BytesIO(body)
        elif request.has_body:
            read_high_bytes = conn.server.read_high_bytes
            self.input = WSGIInput(self, True, read_high_bytes)
            self.state = RECEIVING if buffered else QUEUED
            # A buffered body above this goes to a temporary file.
            self.spool_bytes = read_high_bytes
            # Called on the loop once a buffered body is whole (the pool's admission).
            self.on_body: Optional[Callable[["WSGICycle"], None]] = None
            environ["wsgi.input"] = self.input
        else:
            # Without a body, all requests share one input that is always at its end.
            self.input = NO_BODY
            self.state = QUEUED
            environ["wsgi.input"] = NO_BODY
        # 0 until start_response(), which sets the rest of the response's
        # description at once (headers, content_length, app_frames,
        # remaining): nothing reads those before it, so they are not set
        # here (four stores less per request).
        self.status = 0
        self.in_flight = 0             # bytes handed to the loop, not yet written
        self.blocked = False           # the connection's write buffer is above its mark

    # -- the state ---------------------------------------------------------------------

    # region: advance
    def _advance(self, event: CycleEvent) -> CycleState:
        """Apply ``event`` from either thread; return the new state.

        RuntimeError for a move the table does not allow (our bug).
        """
        # acquire() and release() rather than ``with``: the same lock, and
        # 1,100 instructions less each time, twice a request (callgrind;
        # 116 -> 61 ns with timeit; CPython 3.11; benchmarks/RESULTS.md,
        # "WSGI, leaner", issue 14).
        lock = self.lock
        lock.acquire()
        try:
            old = self.state
            new = _MOVES[old].get(event)
            if new is None:
                raise RuntimeError("WSGI cycle: no move from %s on %s"
                                   % (old.name, event.name))
            self.state = new
            if self._changed is not None:
                self._changed.notify()
        finally:
            lock.release()
        if trace is not None:
            trace(self, old, event, new)
        return new
    # endregion: advance

    def wait(self) -> None:
        """Wait for a change (the app's thread, with ``lock`` held)."""
        changed = self._changed
        if changed is None:
            changed = self._changed = threading.Condition(self.lock)
        changed.wait()

    def notify(self) -> None:
        """Wake the app's thread (with ``lock`` held)."""
        changed = self._changed
        if changed is not None:
            changed.notify()

    # -- the app's thread ------------------------------------------------------------

    def run(self) -> None:
        """Call the app and hand its response to the loop (a pool thread)."""
        if self._advance(STARTED) is GONE:
            self.input.close()
            return  # the client left while the request waited for a thread
        result = None
        finished = False
        try:
            result = self.app(self.environ, self.start_response)
            if result.__class__ is list and self.state is RUNNING:
                self._respond_whole(result)
            elif (result.__class__ is FileWrapper and self.status
                  and self._can_send_file(result.filelike)):
                self._send_file(result.filelike)
            else:
                self._send_iterable(result)
            finished = True
        except ResponseGone:
            finished = True
            log.debug("client gone before the response ended (%s)", self._describe())
        except Exception as exc:
            finished = True
            if _caused_by_client(exc):
                log.debug("client gone: %s (%s)", exc, self._describe())
            else:
                log.exception("Exception in WSGI application (%s)", self._describe())
            self._fail()
        finally:
            if not finished:
                # A BaseException (SystemExit, KeyboardInterrupt) left the app:
                # end the response as for an error, then let it propagate.
                self._fail()
            if result.__class__ is not list and hasattr(result, "close"):   # a list has none
                try:
                    result.close()
                except Exception:
                    log.exception("Exception in close() of WSGI response (%s)", self._describe())
            if self.input._file is not None:
                self.input.close()

    def start_response(self, status: str, headers: List[Tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``; raises on a status or header HTTP cannot carry."""
        if exc_info is not None:
            try:
                if self.state is not RUNNING and self.state is not QUEUED:
                    # PEP 3333: too late to replace the head; re-raise the app's error.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise RuntimeError("start_response() called twice without exc_info")
        fields = tuple(headers)
        try:
            known = _HEADS.get((status, fields))
        except TypeError:
            known = None   # a list among the fields: _head_of says whether it may be
        if known is None:
            known = _head_of(status, fields)
        self.status, self.headers, self.content_length, self.remaining, self.app_frames = known
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()``: returns once the loop has room for ``data``."""
        if not self.status:
            raise RuntimeError("write() before start_response()")
        try:
            self._send_body(data)
        except ResponseGone:
            raise ClientDisconnected("client disconnected") from None

    def _respond_whole(self, result: list) -> None:
        """Everything is known: head, body and length go to the loop in one call.

        The usual end of a request, written out: ``_hand_over(ENDED, ...)``
        inline, the same steps (one Python call and its argument tuple less
        per request: a call of _hand_over() here measured +1,840
        instructions per WSGI hello, callgrind, CPython 3.11).
        """
        # One piece, the usual body, is the body: b"".join() would return
        # the same object after some 340 instructions of checks (callgrind).
        body = result[0] if len(result) == 1 else b"".join(result)
        if body.__class__ is not bytes:
            body = b"".join(result)   # a bytearray or memoryview; TypeError for the rest
        status = self.status
        if not status:
            raise RuntimeError("WSGI app returned without calling start_response()")
        if not self.app_frames and response_has_body(status, self.request.method):
            self.headers += ((b"content-length", b"%d" % len(body)),)
        # The loop reads the response from the cycle (its callback takes no
        # arguments: see LoopQueue.call); what is set before the call is
        # seen by the loop, which takes the callback from the queue after.
        self.body = body
        if self._advance(ENDED) is GONE:
            raise ResponseGone
        try:
            self.to_loop.call(self._respond_on_loop)
        except RuntimeError:
            # The loop is closed (as in _hand_over).
            self._advance(DISCONNECTED)
            raise ResponseGone from None

    def _send_iterable(self, result: Any) -> None:
        if hasattr(result, "__await__"):
            raise TypeError("the WSGI app returned an awaitable: is it an ASGI app? "
                            "(start with --interface asgi3)")
        for data in result:
            if data:
                if not self.status:
                    raise RuntimeError("WSGI app yielded a body before calling start_response()")
                self._send_body(data)
                if self.remaining == 0:
                    break  # Content-Length reached: the rest would be dropped anyway
            elif self.state is GONE:
                raise ResponseGone
        if not self.status:
            raise RuntimeError("WSGI app returned without calling start_response()")
        if self.state is RUNNING:
            self._respond_whole([])
        else:
            self._hand_over(ENDED, self._send_on_loop, b"", True)

    def _send_body(self, data: bytes) -> None:
        """Hand a piece of body to the loop, after waiting for room."""
        if data.__class__ is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError("WSGI body pieces must be bytes, not %s" % type(data).__name__)
            data = bytes(data)
        if not data:
            return
        remaining = self.remaining
        if remaining >= 0:
            if remaining < len(data):
                data = data[:remaining]
            self.remaining = remaining - len(data)
        self._wait_for_room(len(data))
        if self.state is RUNNING:
            self._hand_over(HEAD, self._start_on_loop, self.status, self.headers, data)
        else:
            self._hand_over(None, self._send_on_loop, data, False)

    def _wait_for_room(self, size: int) -> None:
        high_bytes = self.conn.server.write_high_bytes
        with self.lock:
            while (self.blocked or self.in_flight >= high_bytes) and self.state is not GONE:
                self.wait()
            if self.state is GONE:
                raise ResponseGone
            self.in_flight += size

    def _can_send_file(self, file: Any) -> bool:
        if self.content_length is None and (self.state is not RUNNING or self.app_frames):
            return False  # chunked: file bytes cannot be sent as they are
        try:
            return stat.S_ISREG(os.fstat(file.fileno()).st_mode)
        except (AttributeError, OSError, ValueError):
            return False  # no descriptor (io.BytesIO, a closed file, ...)

    def _send_file(self, file: Any) -> None:
        """The loop sends the file with sendfile; we wait here until it is done."""
        offset = file.tell()
        count = max(0, os.fstat(file.fileno()).st_size - offset)
        if self.remaining >= 0:
            count = min(count, self.remaining)
        head = None
        if self.state is RUNNING:
            headers = self.headers
            if not self.app_frames and status_has_body(self.status):
                headers += ((b"content-length", b"%d" % count),)
            head = (self.status, headers)
        self._wait_for_room(0)
        self._hand_over(FILE, self._send_file_on_loop, head, file, offset, count)
        with self.lock:
            while self.state is SENDING_FILE:
                self.wait()

    def _fail(self) -> None:
        """500 if the head is not out yet, else a broken connection."""
        # Only this thread leaves RUNNING for STREAMING; the loop can only
        # make it GONE meanwhile, and GONE absorbs FAILED.
        state = self.state
        if state is not RUNNING and state is not STREAMING:
            return
        try:
            self._hand_over(FAILED, self._fail_on_loop, state is STREAMING)
        except ResponseGone:
            pass

    def _hand_over(self, event: Optional[CycleEvent], callback: Callable[..., None],
                   *args: Any) -> None:
        """Advance by ``event`` (if any), then run ``callback`` on the loop.

        Raises ``ResponseGone`` when the cycle is (or becomes) GONE.
        """
        if event is not None:
            if self._advance(event) is GONE:
                raise ResponseGone
        elif self.state is GONE:
            raise ResponseGone
        try:
            self.to_loop.call(callback, *args)
        except RuntimeError:
            # The loop is closed: the worker stopped while the app ran.
            self._advance(DISCONNECTED)
            raise ResponseGone from None

    def request_body(self) -> None:
        """Ask the loop for more body (``WSGIInput`` calls it, outside the lock)."""
        try:
            self.to_loop.call(self._read_on_loop)
        except RuntimeError:
            self.input.fail(ClientDisconnected("the server stopped"))

    def _describe(self) -> str:
        environ = self.environ
        return "%s %s" % (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))

    # -- the loop ---------------------------------------------------------------------

    def receive_on_loop(self) -> None:
        """Buffered: pull what has arrived of the body; once it is whole,
        hand the cycle to ``on_body`` (for a thread).

        Bodies up to ``spool_bytes`` stay in memory; a larger one goes to an
        anonymous temporary file as it arrives, so a slow or large upload
        holds neither a thread nor much memory.
        """
        conn = self.conn
        body = self.input
        while self.state is RECEIVING:
            event = conn.receive_body()
            if event is None:
                return   # on_data_received brings more (or on_disconnect the end)
            if event.__class__ is Data:
                body.collect(event.data)
                if body._size > self.spool_bytes:
                    body.spill(tempfile.TemporaryFile())
            else:
                body.collect_eof()
                if self._advance(BODY_RECEIVED) is QUEUED:
                    self.on_body(self)
                return

    def refuse_on_loop(self, retry_after_s: int) -> None:
        """503 without calling the app: the pool has no room (docs/wsgi.md)."""
        self._advance(REFUSED)
        self.input.close()
        self.conn.refuse(retry_after_s)

    def _start_on_loop(self, status: int, headers: Tuple[Tuple[bytes, bytes], ...],
                       body: bytes) -> None:
        """The head and a first piece of body; more follows (``_send_on_loop``)."""
        conn = self.conn
        if conn.cycle is not self:
            self._written(len(body), False)
            return
        try:
            must_wait = conn.respond(status, headers, body)
        except InvalidResponse as exc:
            self._refuse_head_on_loop(exc)
            return
        self._written(len(body), must_wait)

    def _respond_on_loop(self) -> None:
        """The whole response in one piece (``_respond_whole``)."""
        conn = self.conn
        if conn.cycle is self:
            try:
                conn.respond(self.status, self.headers, self.body, True)
            except InvalidResponse as exc:
                self._refuse_head_on_loop(exc)
                return
            if not self.input._eof:
                self._ended()   # (a call only when there is something to end)

    def _refuse_head_on_loop(self, exc: InvalidResponse) -> None:
        """The writer refused the app's head: a 500 instead, and the app learns it."""
        log.error("invalid response from WSGI app for %s: %s", self._describe(), exc)
        self.conn.respond_error(500)
        self._drop()

    def _send_on_loop(self, body: bytes, end: bool) -> None:
        conn = self.conn
        must_wait = False
        if conn.cycle is self:
            must_wait = conn.send_body(body, end)
            if end:
                self._ended()
                return
        if body:
            self._written(len(body), must_wait)

    def _send_file_on_loop(self, head: Optional[Tuple[int, list]], file: Any,
                           offset: int, count: int) -> None:
        conn = self.conn
        if conn.cycle is not self:
            self._drop()
            return
        if head is not None:
            try:
                conn.respond(head[0], head[1])
            except InvalidResponse as exc:
                self._refuse_head_on_loop(exc)
                return
        conn.send_file(file, offset, count, self._file_sent_on_loop)

    def _file_sent_on_loop(self) -> None:
        conn = self.conn
        if conn.cycle is self:
            conn.send_body(b"", True)
            self._ended()
        self._advance(FILE_SENT)

    def _fail_on_loop(self, head_sent: bool) -> None:
        conn = self.conn
        if conn.cycle is not self:
            return
        if head_sent:
            # The head is out: only a broken connection can tell the client.
            conn.cycle = None
            conn.abort()
        else:
            conn.respond_error(500)
        self._ended()

    def _written(self, size: int, must_wait: bool) -> None:
        with self.lock:
            self.in_flight -= size
            if must_wait:
                self.blocked = True
            self.notify()

    def _ended(self) -> None:
        # The app may still read the body in close(); nothing will feed it now.
        # (A body that is whole cannot fail: no error to build, per response.)
        body = self.input
        if not body._eof:
            body.fail(ClientDisconnected("the request body is gone: the response ended"))

    def _drop(self) -> None:
        """The connection takes no more of this response: GONE, then the input fails."""
        self._advance(DISCONNECTED)
        self._ended()

    def _read_on_loop(self) -> None:
        if self.conn.cycle is not self:
            self._ended()
            return
        self._pull_body()

    def _pull_body(self) -> None:
        """Streamed: move buffered body into ``wsgi.input`` until it ends or is full."""
        conn = self.conn
        body = self.input
        while True:
            event = conn.receive_body()
            if event is None:
                return  # on_data_received brings more (or on_disconnect the end)
            if event.__class__ is Data:
                if body.feed(event.data):
                    return   # full: the app's reads ask for more
            else:
                body.feed_eof()
                return

    def on_data_received(self) -> None:
        if self.state is RECEIVING:
            self.receive_on_loop()
        elif self.input.wants_more():
            self._pull_body()

    def on_drained(self) -> None:
        if self.blocked:
            with self.lock:
                self.blocked = False
                self.notify()

    def on_disconnect(self) -> None:
        # GONE first: an app that fails on the input's error must find the
        # cycle GONE, or it would be logged as the app's fault.
        state = self.state
        self._advance(DISCONNECTED)
        self.input.fail(ClientDisconnected("client disconnected"))
        if state is RECEIVING:
            self.input.close()   # no thread will run it
        conn = self.conn
        on_response = conn.server.on_response
        writer = conn.writer
        if (on_response is not None and writer is not None and writer.started
                and not writer.finished):
            # A response cut short has its access line, with what was sent.
            # One that never started has none: the connection logs its own
            # answer (400, 408) and a client that left before the head got
            # nothing to log.
            on_response(conn, conn.request, writer, _elapsed(conn))


# region: body-at-head
def body_at_head(conn: Connection, request: Request, limit_bytes: int) -> Optional[bytes]:
    """The request's whole body, taken now, when it all came with the head:
    a Content-Length body of at most ``limit_bytes``, all buffered.  Else None.

    Most small POSTs arrive in the same recv() as their head.  Taking the
    body here lets the cycle start QUEUED with an ``io.BytesIO``: no
    RECEIVING step, no lock round trip for BODY_RECEIVED, no Python-level
    ``WSGIInput`` for the app to read through (benchmarks/RESULTS.md, "the
    WSGI hand-off", issue 14).  Chunked bodies take the RECEIVING way: the
    parser only knows they are whole once it has parsed them.
    """
    length = request.content_length
    if not length or length > limit_bytes:
        return None
    # One call: the body and its end at once, or None (not all here yet).
    return conn.receive_whole_body()
# endregion: body-at-head


def _elapsed(conn: Connection) -> float:
    started_at = conn.started_at
    return conn.loop.time() - started_at if started_at else 0.0


def _caused_by_client(exc: BaseException) -> bool:
    """Did ``exc`` come from the client leaving (our error, or a framework's
    raised from it)?  Those are logged at debug, not as the app's fault."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ClientDisconnected):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
