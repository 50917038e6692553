"""Chapter 4: WSGI (PEP 3333) on a thread pool.

A WSGI application blocks, so it runs on one of ``--threads`` pool threads
while the loop goes on serving other connections.  Threads never touch a
socket (DESIGN.md decision 6): the loop builds the environ, the app's thread
runs the app, and everything the app says crosses back to the loop through
a ``LoopQueue`` (``call_soon_threadsafe``, one wake-up per batch).  The loop
alone calls the connection.

Two streams cross between the threads, each bounded:

* the request body: the loop pulls it from the connection into
  ``WSGIInput`` once the app first reads, and stops pulling while the app's
  buffer is full; the connection then stops reading the socket by itself,
  and TCP makes the client wait;
* the response: body pieces are handed to the loop as they are produced;
  the app's thread waits while the loop has too many bytes in flight or the
  connection's write buffer is above its high-water mark.

The common case costs one hop each way: an app that returns a list has its
whole response (head, body, Content-Length) handed over in one call.

Invariant: an app's ``close()`` is called exactly once, on the app's thread,
whatever happens to the response or the client.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import stat
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from .connection import Connection, Cycle
from .errors import InvalidResponse
from .http11.events import Data, Request, split_target
from .proxy import apply_to_environ, from_config as trusted_proxies

log = logging.getLogger("selectserver.error")

# Method tokens are decoded once, not per request.
_METHODS = {m.encode(): m for m in
            ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")}

_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1"}

# Header names become environ keys once; a client cannot grow this past the cap.
_ENVIRON_KEYS: Dict[bytes, Optional[str]] = {
    b"content-type": "CONTENT_TYPE",
    b"content-length": None,   # CONTENT_LENGTH comes from the parser's framing
}
_ENVIRON_KEYS_MAX = 512

# PEP 3333 leaves no room for these in a header: they would end the head.
_FORBIDDEN_IN_HEADER = re.compile(r"[\r\n\0]")

# Statuses whose responses have no body, so no Content-Length of our own.
_NO_BODY_STATUSES = frozenset((204, 304))

_FILE_BLOCK_BYTES = 8192


class LoopQueue:
    """Callbacks from app threads to the loop, with one wake-up per batch.

    ``loop.call_soon_threadsafe`` writes to the loop's self-pipe on every
    call: a syscall on the thread and another on the loop.  Here only the
    first call of a batch does; later ones join the batch while the loop has
    not run it yet.  Callbacks run in the order they were queued.
    """

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._pending: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop; RuntimeError if the loop is closed."""
        self._pending.append((callback, args))
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._run_batch)
        except RuntimeError:
            with self._lock:
                self._scheduled = False
            raise

    def _run_batch(self) -> None:
        with self._lock:
            # Before taking: a callback queued from now on schedules its own batch.
            self._scheduled = False
        pending = self._pending
        while pending:
            callback, args = pending.popleft()
            try:
                callback(*args)
            except Exception as exc:
                self._loop.call_exception_handler({
                    "message": "error in a WSGI callback", "exception": exc})


class ClientDisconnected(OSError):
    """The client went away: raised by ``wsgi.input`` reads and ``write()``."""


class ResponseGone(Exception):
    """The response cannot go on (client gone, or the loop refused it)."""


class WSGIInput:
    """``wsgi.input``: the request body, filled by the loop, read by the app.

    Reads block the app's thread until enough bytes are here or the body
    ends; ``read(n)`` returns ``n`` bytes unless the body ends first.  At
    most ``high_bytes`` (plus one received piece) wait in the buffer.
    Raises ``ClientDisconnected`` when the client leaves mid-body.
    """

    __slots__ = ("_cycle", "_cond", "_chunks", "_offset", "_size", "_eof", "_error",
                 "_requested", "_paused", "_high_bytes", "_resume_bytes")

    def __init__(self, cycle: "WSGICycle", has_body: bool, high_bytes: int) -> None:
        self._cycle = cycle
        # The condition of the thread that runs the app; set by WSGICycle.run.
        self._cond: Any = None
        self._chunks: collections.deque = collections.deque()
        self._offset = 0           # bytes of _chunks[0] already read
        self._size = 0             # unread bytes in _chunks
        self._eof = not has_body
        self._error: Optional[BaseException] = None
        self._requested = False    # the loop was asked to start pulling
        self._paused = False       # the loop stopped pulling: buffer full
        self._high_bytes = high_bytes
        self._resume_bytes = high_bytes // 2

    # -- the loop's side ------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """Add body bytes; True when the buffer is full and the loop must pause.

        Before the cycle reaches a thread (``_cond`` is None, see
        ``WSGICycle.take_whole_body``) there is no reader to lock out or wake.
        """
        cond = self._cond
        if cond is None:
            return self._add(data)
        with cond:
            paused = self._add(data)
            cond.notify()
            return paused

    def _add(self, data: bytes) -> bool:
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= self._high_bytes:
            self._paused = True
            return True
        return False

    def feed_eof(self) -> None:
        cond = self._cond
        if cond is None:
            self._eof = True
            return
        with cond:
            self._eof = True
            cond.notify()

    def fail(self, error: BaseException) -> None:
        """No more body will come: reads past the buffered bytes raise ``error``."""
        cond = self._cond
        self._error = error
        # Set first, look for a waiter second: a thread that installs its
        # condition after we looked will see the error before it waits.
        if cond is not None:
            with cond:
                cond.notify_all()

    # -- the app's side ----------------------------------------------------------------

    def read(self, size: Optional[int] = -1) -> bytes:
        return self._read(size, False)

    def readline(self, size: Optional[int] = -1) -> bytes:
        return self._read(size, True)

    def readlines(self, hint: Optional[int] = -1) -> List[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> "WSGIInput":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _read(self, size: Optional[int], line: bool) -> bytes:
        """Up to ``size`` bytes (all if negative), stopping after a newline if ``line``."""
        if size is None or size < 0:
            size = -1
        elif size == 0:
            return b""
        pieces = []
        got = 0
        while size < 0 or got < size:
            piece = self._read_some(size - got if size >= 0 else -1, line)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
            if line and piece[-1:] == b"\n":
                break
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _read_some(self, limit: int, line: bool) -> bytes:
        """At least one byte (at most ``limit``; up to a newline if ``line``),
        or ``b""`` at the end of the body.  Blocks while nothing is here."""
        if self._eof and not self._size:
            return b""
        cond = self._cond
        with cond:
            while not self._size:
                if self._eof:
                    return b""
                if self._error is not None:
                    raise self._error
                if not self._requested:
                    # RFC 9110 §10.1.1: 100 Continue goes out now, from the loop.
                    self._requested = True
                    self._cycle.request_body()
                    continue
                cond.wait()
            data = self._take(limit, line)
            resume = self._paused and self._size <= self._resume_bytes
            if resume:
                self._paused = False
        if resume:
            self._cycle.request_body()
        return data

    def _take(self, limit: int, line: bool) -> bytes:
        chunks = self._chunks
        pieces = []
        taken = 0
        while chunks and (limit < 0 or taken < limit):
            chunk = chunks[0]
            start = self._offset
            end = len(chunk) if limit < 0 else min(len(chunk), start + limit - taken)
            found = -1
            if line:
                found = chunk.find(b"\n", start, end)
                if found >= 0:
                    end = found + 1
            if start == 0 and end == len(chunk):
                pieces.append(chunk)
            else:
                pieces.append(chunk[start:end])
            taken += end - start
            if end == len(chunk):
                chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
            if found >= 0:
                break
        self._size -= taken
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


NO_BODY = WSGIInput(None, False, 0)  # type: ignore[arg-type]


class FileWrapper:
    """``wsgi.file_wrapper``: a file as an iterable of blocks.

    Returned by the app, a wrapper around a regular file with a descriptor
    is sent by the loop with ``os.sendfile`` instead of being iterated.
    """

    __slots__ = ("filelike", "block_size")

    def __init__(self, filelike: Any, block_size: int = _FILE_BLOCK_BYTES) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Any:
        read = self.filelike.read
        size = self.block_size
        while True:
            data = read(size)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class WSGICycle(Cycle):
    """One request served by a WSGI app: the app's thread on one side, the
    connection on the loop on the other.

    Methods named ``*_on_loop`` and the ``Cycle`` notifications run on the
    loop; ``run``, ``start_response`` and ``write`` on the app's thread.
    """

    __slots__ = (
        "conn", "to_loop", "app", "environ", "input", "cond", "high_bytes",
        # the app's thread
        "status", "headers", "content_length", "app_frames", "head_sent", "remaining",
        # shared, under cond
        "gone", "in_flight", "blocked", "file_sent",
        # the loop
        "reading",
    )

    def __init__(self, conn: Connection, app: Any, request: Request, to_loop: LoopQueue) -> None:
        self.conn = conn
        self.to_loop = to_loop
        self.app = app
        self.environ: Dict[str, Any] = {}
        server = conn.server
        # Without a body, all requests share one input that is always at its end.
        self.input = (WSGIInput(self, True, server.read_high_bytes) if request.has_body
                      else NO_BODY)
        self.cond: Any = None
        self.high_bytes = server.write_high_bytes
        self.status = 0
        self.headers: List[Tuple[bytes, bytes]] = []
        self.content_length: Optional[int] = None
        self.app_frames = False        # the app sent Content-Length or Transfer-Encoding
        self.head_sent = False
        self.remaining = -1            # body bytes the app's Content-Length still allows
        self.gone = False
        self.in_flight = 0             # bytes handed to the loop, not yet written
        self.blocked = False           # the connection's write buffer is above the mark
        self.file_sent = False
        self.reading = False

    # -- the app's thread ------------------------------------------------------------

    def run(self, cond: Any) -> None:
        """Call the app and hand its response to the loop (a pool thread)."""
        self.cond = cond
        if self.input is not NO_BODY:
            self.input._cond = cond
        if self.gone:
            return  # the client left while the request waited for a thread
        result = None
        finished = False
        try:
            result = self.app(self.environ, self.start_response)
            if result.__class__ is list and not self.head_sent:
                self._respond_whole(result)
            elif result.__class__ is FileWrapper and self._can_send_file(result.filelike):
                self._send_file(result.filelike)
            else:
                self._send_iterable(result)
            finished = True
        except ResponseGone:
            finished = True
            log.debug("client gone before the response ended (%s)", self._describe())
        except Exception as exc:
            finished = True
            if self.gone and isinstance(exc, ClientDisconnected):
                log.debug("client gone before the response ended (%s)", self._describe())
            else:
                log.exception("Exception in WSGI application (%s)", self._describe())
                self._fail()
        finally:
            if not finished:
                # A BaseException (SystemExit, KeyboardInterrupt) left the app:
                # end the response as for an error, then let it propagate.
                self._fail()
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception:
                    log.exception("Exception in close() of WSGI response (%s)", self._describe())

    def start_response(self, status: str, headers: List[Tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``; raises on a status or header HTTP cannot carry."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    # PEP 3333: too late to replace the head; re-raise the app's error.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise RuntimeError("start_response() called twice without exc_info")
        code = _status_code(status)
        pairs = []
        content_length = None
        app_frames = False
        for name, value in headers:
            if name.__class__ is not str or value.__class__ is not str:
                raise TypeError("header names and values must be str, not %r" % ((name, value),))
            text = name + value
            # isprintable() is the fast way to say "no control characters";
            # only text that fails it (a tab, say) is searched for CR, LF, NUL.
            if not text.isprintable() and _FORBIDDEN_IN_HEADER.search(text):
                raise InvalidResponse("CR, LF or NUL in header %r" % (name,))
            pairs.append((name.encode("latin-1"), value.encode("latin-1")))
            if len(name) in (14, 17):
                lowered = name.lower()
                if lowered == "content-length":
                    app_frames = True
                    if value.isdigit():
                        content_length = int(value)
                elif lowered == "transfer-encoding":
                    app_frames = True
        self.status = code
        self.headers = pairs
        self.content_length = content_length
        self.remaining = -1 if content_length is None else content_length
        self.app_frames = app_frames
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
        """Everything is known: head, body and length go to the loop in one call."""
        body = b"".join(result)
        if not self.status:
            raise RuntimeError("WSGI app returned without calling start_response()")
        headers = self.headers
        if not self.app_frames and self._may_add_length():
            headers.append((b"content-length", b"%d" % len(body)))
        self.head_sent = True
        self._hand_over(self._respond_on_loop, self.status, headers, body, True)

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
        if not self.status:
            raise RuntimeError("WSGI app returned without calling start_response()")
        if self.head_sent:
            self._hand_over(self._send_on_loop, b"", True)
        else:
            self._respond_whole([])

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
        if self.head_sent:
            self._hand_over(self._send_on_loop, data, False)
        else:
            self.head_sent = True
            self._hand_over(self._respond_on_loop, self.status, self.headers, data, False)

    def _wait_for_room(self, size: int) -> None:
        cond = self.cond
        with cond:
            while (self.blocked or self.in_flight >= self.high_bytes) and not self.gone:
                cond.wait()
            if self.gone:
                raise ResponseGone
            self.in_flight += size

    def _can_send_file(self, file: Any) -> bool:
        if self.content_length is None and (self.head_sent or self.app_frames):
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
        if not self.status:
            raise RuntimeError("WSGI app returned without calling start_response()")
        head = None
        if not self.head_sent:
            headers = self.headers
            if not self.app_frames and self.status not in _NO_BODY_STATUSES:
                headers.append((b"content-length", b"%d" % count))
            head = (self.status, headers)
            self.head_sent = True
        self._wait_for_room(0)
        self._hand_over(self._send_file_on_loop, head, file, offset, count)
        cond = self.cond
        with cond:
            while not self.file_sent and not self.gone:
                cond.wait()

    def _may_add_length(self) -> bool:
        return (self.status not in _NO_BODY_STATUSES and self.status >= 200
                and self.environ["REQUEST_METHOD"] != "HEAD")

    def _fail(self) -> None:
        """500 if the head is not out yet, else a broken connection."""
        try:
            self._hand_over(self._fail_on_loop, self.head_sent)
        except ResponseGone:
            pass

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        if self.gone:
            raise ResponseGone
        try:
            self.to_loop.call(callback, *args)
        except RuntimeError:
            # The loop is closed: the worker stopped while the app ran.
            self.gone = True
            raise ResponseGone from None

    def take_whole_body(self) -> None:
        """Before the app runs: move a body that has arrived whole into
        ``wsgi.input`` (no thread has the input yet: no lock, nobody to wake).

        The app's reads then find it without a round trip to the loop: a
        4 KiB POST arrives with its head, and asking the loop for it from the
        app's thread cost a wake-up each way.  Not with ``Expect:
        100-continue`` (the client waits until the app reads) nor before a
        chunked body is parsed.
        """
        conn = self.conn
        if (self.input is not NO_BODY and not conn.request.expect_continue
                and conn.parser.body_complete):
            self._pull_body()

    def request_body(self) -> None:
        """Ask the loop for more body (``WSGIInput`` calls it, under its lock)."""
        try:
            self.to_loop.call(self._read_on_loop)
        except RuntimeError:
            self.input._error = ClientDisconnected("the server stopped")

    def _describe(self) -> str:
        environ = self.environ
        return "%s %s" % (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))

    # -- the loop ---------------------------------------------------------------------

    def _respond_on_loop(self, status: int, headers: List[Tuple[bytes, bytes]],
                         body: bytes, end: bool) -> None:
        conn = self.conn
        if conn.cycle is not self:
            if not end:
                self._written(len(body), False)
            return
        try:
            must_wait = conn.respond(status, headers, body, end)
        except InvalidResponse as exc:
            log.error("invalid response from WSGI app for %s: %s", self._describe(), exc)
            conn.respond_error(500)
            self._set_gone()
            return
        if end:
            self._ended()
        else:
            self._written(len(body), must_wait)

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
            self._set_gone()
            return
        if head is not None:
            try:
                conn.respond(head[0], head[1])
            except InvalidResponse as exc:
                log.error("invalid response from WSGI app for %s: %s", self._describe(), exc)
                conn.respond_error(500)
                self._set_gone()
                return
        conn.send_file(file, offset, count, self._file_sent_on_loop)

    def _file_sent_on_loop(self) -> None:
        conn = self.conn
        if conn.cycle is self:
            conn.send_body(b"", True)
            self._ended()
        with self.cond:
            self.file_sent = True
            self.cond.notify()

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
        with self.cond:
            self.in_flight -= size
            if must_wait:
                self.blocked = True
            self.cond.notify()

    def _ended(self) -> None:
        # The app may still read the body in close(); nothing will feed it now.
        if not self.input._eof:
            self.input.fail(ClientDisconnected("the request body is gone: the response ended"))

    def _set_gone(self) -> None:
        self.gone = True
        cond = self.cond
        if cond is not None:
            with cond:
                cond.notify_all()
        self._ended()

    def _read_on_loop(self) -> None:
        if self.conn.cycle is not self:
            self._ended()
            return
        self.reading = True
        self._pull_body()

    def _pull_body(self) -> None:
        """Move buffered body into ``wsgi.input`` until it ends or is full."""
        conn = self.conn
        body = self.input
        while True:
            event = conn.receive_body()
            if event is None:
                return  # on_data_received brings more (or on_disconnect the end)
            if event.__class__ is Data:
                if body.feed(event.data):
                    self.reading = False  # the app's reads ask for more
                    return
            else:
                self.reading = False
                body.feed_eof()
                return

    def on_data_received(self) -> None:
        if self.reading:
            self._pull_body()

    def on_drained(self) -> None:
        cond = self.cond
        if self.blocked and cond is not None:
            with cond:
                self.blocked = False
                cond.notify()

    def on_disconnect(self) -> None:
        if not self.input._eof:
            self.input.fail(ClientDisconnected("client disconnected"))
        self._set_gone()


class ThreadPool:
    """``size`` threads running cycles from one queue.

    Each thread owns one ``threading.Condition``, on which the cycles it runs
    wait: made once per thread, not once per request.
    """

    def __init__(self, size: int, name: str = "selectserver-wsgi") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._name = name
        self._threads: List[threading.Thread] = []
        self._stopping = False
        for _ in range(size):
            self._start_thread()

    def submit(self, cycle: WSGICycle) -> None:
        self._queue.put(cycle)

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, daemon=True,
                                  name="%s-%d" % (self._name, len(self._threads)))
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        cond = threading.Condition(threading.Lock())
        get = self._queue.get
        try:
            while True:
                cycle = get()
                if cycle is None:
                    return
                try:
                    cycle.run(cond)
                except Exception:
                    log.exception("error in a WSGI thread")
        finally:
            if not self._stopping:
                # A BaseException from an app ended this thread: replace it.
                self._start_thread()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Let each thread finish its request, then stop it (bounded wait)."""
        self._stopping = True
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = sum(thread.is_alive() for thread in self._threads)
        if busy:
            log.warning("%d WSGI thread(s) still running an app at shutdown", busy)


def make_handler(app: Any, config: Any, loop: Any
                 ) -> Tuple[Callable[[Connection, Request], None], Callable[[], None]]:
    """The connection's request handler for WSGI ``app``, and the pool's shutdown."""
    pool = ThreadPool(config.threads)
    to_loop = LoopQueue(loop)
    script_name = _script_name(config.root_path)
    base = {
        "SCRIPT_NAME": script_name,
        "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": config.workers > 1,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }
    submit = pool.submit
    # Requests started in one turn of the loop go to the pool together, at
    # the end of the turn: the woken threads then find them all queued
    # instead of waking, and fighting the loop for the GIL, one request at
    # a time.  Measured with a hello app under wrk -c64: 3.4 context
    # switches per request before, 0.3 after; CPU per request -20%.
    started: List[WSGICycle] = []

    def submit_started() -> None:
        for cycle in started:
            submit(cycle)
        started.clear()
    trusted = trusted_proxies(config)

    def handle(conn: Connection, request: Request) -> None:
        cycle = WSGICycle(conn, app, request, to_loop)
        environ = build_environ(conn, request, base, script_name)
        if trusted is not None and trusted.trusts(conn.client):
            apply_to_environ(environ, request.headers, trusted)
        environ["wsgi.input"] = cycle.input
        cycle.environ = environ
        conn.cycle = cycle
        cycle.take_whole_body()
        if not started:
            loop.call_soon(submit_started)
        started.append(cycle)

    def shutdown() -> None:
        pool.shutdown(config.timeout_graceful_shutdown_s)

    return handle, shutdown


def build_environ(conn: Connection, request: Request, base: Dict[str, Any],
                  script_name: str) -> Dict[str, Any]:
    """The PEP 3333 environ for ``request``, without ``wsgi.input``.

    ``base`` holds the keys that do not change between requests.  Text is
    "bytes as latin-1 str" as PEP 3333 says; PATH_INFO is percent-decoded
    first, and loses ``script_name`` when it starts with it.
    """
    environ = base.copy()
    raw_path, query = split_target(request.target)
    if b"%" in raw_path:
        raw_path = unquote_to_bytes(raw_path)
    path = raw_path.decode("latin-1")
    if script_name and path.startswith(script_name) and (
            len(path) == len(script_name) or path[len(script_name)] == "/"):
        path = path[len(script_name):]
    environ["REQUEST_METHOD"] = _METHODS.get(request.method) or request.method.decode("latin-1")
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = environ["REQUEST_URI"] = request.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(request.http_version) or "HTTP/" + request.http_version
    environ["wsgi.url_scheme"] = conn.server.scheme
    local = conn.local
    if local is not None:
        environ["SERVER_NAME"] = local[0]
        environ["SERVER_PORT"] = str(local[1])
    client = conn.client
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    if request.content_length is not None and not request.chunked:
        environ["CONTENT_LENGTH"] = str(request.content_length)
    keys = _ENVIRON_KEYS
    for name, value in request.headers:
        key = keys.get(name, "")
        if key == "":
            if b"_" in name:
                # "x_user" would reach the app as HTTP_X_USER, like "x-user":
                # a client could spoof a header a proxy vouches for.
                continue
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if len(keys) < _ENVIRON_KEYS_MAX:
                keys[name] = key
        elif key is None:
            continue
        text = value.decode("latin-1")
        if key in environ:
            # RFC 9110 §5.3: repeated fields are one comma-separated list;
            # cookies are the exception (RFC 6265 §5.4 separates them with "; ").
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    if local is None:
        _server_from_host(environ)
    return environ


def _server_from_host(environ: Dict[str, Any]) -> None:
    """SERVER_NAME/SERVER_PORT for a Unix socket: from Host, as PEP 3333 rebuilds URLs."""
    host = environ.get("HTTP_HOST", "")
    default_port = "443" if environ["wsgi.url_scheme"] == "https" else "80"
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:
        name, port = host, default_port
    environ["SERVER_NAME"] = name or "localhost"
    environ["SERVER_PORT"] = port or default_port


def _script_name(root_path: str) -> str:
    """``--root-path`` as SCRIPT_NAME: latin-1 text of its UTF-8, no trailing slash."""
    return root_path.rstrip("/").encode("utf-8").decode("latin-1")


def _status_code(status: Any) -> int:
    """The code of a PEP 3333 status line such as ``"200 OK"``."""
    if status.__class__ is not str:
        raise TypeError("status must be a str such as '200 OK', not %r" % (status,))
    code = status[:3]
    if not (code.isdigit() and code.isascii()) or (len(status) > 3 and status[3] != " "):
        raise InvalidResponse("invalid status %r" % (status,))
    if not status.isprintable() and _FORBIDDEN_IN_HEADER.search(status):
        raise InvalidResponse("CR, LF or NUL in status %r" % (status,))
    return int(code)
