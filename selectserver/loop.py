"""Chapter 1: the event loop.

One ``EventLoop`` runs in each worker process.  It *is* an asyncio event
loop -- a subclass of ``asyncio.SelectorEventLoop`` -- so an application
that calls ``asyncio.sleep``, ``run_in_executor``, ``open_connection`` or
anything built on them gets the real thing.  What we replace is the loop's
heart, the run-once step:

    1. work out how long ``select()`` may block (0 if callbacks are ready,
       else until the earliest timer, else forever);
    2. ``select()``: ask the kernel which sockets are ready;
    3. dispatch: a server connection is called directly
       (``conn.on_readable()`` / ``conn.on_writable()``); asyncio's own
       readers and writers are queued as asyncio queues them; then the
       connections that queued answers meanwhile send them
       (``batch``: all reads of a batch, then all sends);
    4. move due timers to the ready queue;
    5. run the callbacks queued by now (those they queue wait for the
       next turn, after another ``select()``).

Server connections sit on the same selector as asyncio's sockets, with the
connection object itself as the selector key's ``data``.  That one choice
removes the transport, protocol and Handle that asyncio puts between a
readable socket and the code that reads it.

This module knows nothing of HTTP.  Its one invariant: a callback that
raises never stops the loop; the error is reported through
``call_exception_handler`` and the loop goes on.

The private attributes of ``asyncio.BaseEventLoop`` used here are
``_ready``, ``_scheduled``, ``_stopping``, ``_selector``,
``_clock_resolution`` and ``_timer_cancelled_count``, and of its handles
``_when``, ``_cancelled``, ``_scheduled`` and ``_run``;
``tests/unit/test_loop.py`` pins them on every supported Python.
"""

from __future__ import annotations

import asyncio
import heapq
import selectors
import sys
from typing import Any, Optional

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE

# asyncio never blocks in select() longer than a day; neither do we.
MAXIMUM_SELECT_TIMEOUT_S = 24 * 3600

# Same policy as asyncio: rebuild the timer heap once more than half of at
# least 100 timers are cancelled, otherwise only pop cancelled ones off the top.
_MIN_SCHEDULED_TIMERS = 100
_MAX_CANCELLED_FRACTION = 0.5

# The wake-up below reasons with one lock held around every step of every
# thread (the GIL).  A build without it wakes the loop on every call.
_ONE_THREAD_AT_A_TIME = getattr(sys, "_is_gil_enabled", lambda: True)()

SELECTORS = {
    "epoll": "EpollSelector",
    "poll": "PollSelector",
    "select": "SelectSelector",
    "kqueue": "KqueueSelector",
    "devpoll": "DevpollSelector",
}


def make_selector(name: str = "auto") -> selectors.BaseSelector:
    """A selector by name (``auto`` is ``selectors.DefaultSelector``).

    Raises ``ValueError`` for a backend this platform does not have.
    """
    if name in ("auto", "default", None):
        return selectors.DefaultSelector()
    class_name = SELECTORS.get(name)
    selector_class = getattr(selectors, class_name, None) if class_name else None
    if selector_class is None:
        available = [n for n, c in SELECTORS.items() if hasattr(selectors, c)]
        raise ValueError(
            "selector %r is not available here (try: %s)" % (name, ", ".join(available)))
    return selector_class()


class EventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop with a hand-written run-once step.

    Connections use three methods besides the asyncio API:
    ``add_connection``, ``set_interest`` and ``remove_connection``, and the
    ``batch`` list (see ``_process_events``).  A connection object must
    provide ``on_readable()``, ``on_writable()`` and ``abort()``.
    """

    # While _process_events runs (a batch of events): the connections that
    # queued answers, to flush once every ready socket has been served; None
    # outside a batch.  Connections append themselves.
    batch: Optional[list] = None

    # True from just before the loop's last look at its ready queue until
    # select() returns: the only time a callback queued by another thread
    # could wait unseen (see _write_to_self).
    _may_block = False

    # region: turn-clock
    # The clock (time(), the monotonic one) as read when this part of the
    # turn began: once select() returned, and again before the ready
    # callbacks run.  Connections set their deadlines from it, seconds
    # ahead, rather than read the clock for each request: one read serves
    # every request of a turn (some 45 under wrk -c64), and a deadline
    # comes at most one turn early (benchmarks/RESULTS.md, "the turn's
    # clock", issue 14).
    now = 0.0
    # endregion: turn-clock

    def __init__(self, selector: Optional[selectors.BaseSelector] = None) -> None:
        super().__init__(selector or make_selector())
        self.now = self.time()

    # -- the surface connections use -------------------------------------

    def add_connection(self, sock: Any, conn: Any, events: int) -> None:
        """Watch ``sock`` for ``events``; readiness calls ``conn`` directly."""
        self._selector.register(sock, events, conn)

    # region: set-interest
    def set_interest(self, sock: Any, conn: Any, events: int) -> None:
        """Change what ``sock`` is watched for (0: nothing, for now)."""
        # An epoll set can hold a socket with no events; select() and poll()
        # cannot, so "nothing" is expressed as unregistering.
        selector = self._selector
        if events:
            try:
                selector.modify(sock, events, conn)
            except KeyError:
                selector.register(sock, events, conn)
        else:
            self.remove_connection(sock)
    # endregion: set-interest

    def remove_connection(self, sock: Any) -> None:
        """Stop watching ``sock``; harmless if it is not watched."""
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            # ValueError: the socket is already closed (fileno() is -1).
            pass

    # -- the heart ------------------------------------------------------------

    # region: run-once
    def _run_once(self) -> None:
        """One turn: select, dispatch, fire due timers, run ready callbacks."""
        ready = self._ready
        scheduled = self._scheduled
        self._drop_cancelled_timers()

        if ready or self._stopping:
            timeout: Optional[float] = 0
        else:
            # The flag first, then the last look at the ready queue (see
            # _write_to_self for why this order cannot lose a wake-up).
            self._may_block = True
            if ready:
                timeout = 0
            elif scheduled:
                timeout = min(max(0.0, scheduled[0]._when - self.time()),
                              MAXIMUM_SELECT_TIMEOUT_S)
            else:
                timeout = None

        event_list = self._selector.select(timeout)
        self._may_block = False
        self.now = self.time()
        self._process_events(event_list)

        # A timer due within the clock's resolution is due now (as asyncio).
        now = self.now = self.time()
        end_time = now + self._clock_resolution
        while scheduled and scheduled[0]._when < end_time:
            handle = heapq.heappop(scheduled)
            handle._scheduled = False
            ready.append(handle)

        # Run what is ready now; callbacks queued by these run next turn,
        # after another select(), so I/O is never starved.
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()
    # endregion: run-once

    # region: wake-up
    def _write_to_self(self) -> None:
        """Wake the loop for a callback another thread queued, only if it
        may be blocked in select().

        Waking only a blocked loop: asyncio writes a byte to its self-pipe
        for every ``call_soon_threadsafe``, and the loop reads it back after
        its next select(): two system calls and a turn of the loop, for
        nothing when the loop is busy anyway.  WSGI's ``LoopQueue`` already
        asks once per batch; under wrk -c64 on a WSGI hello this took the
        self-pipe's writes from 2.7% of requests to 1.7%, below the noise
        in CPU per request, and spares any thread (``run_in_executor``) a
        send() while the loop is busy (benchmarks/RESULTS.md, "the WSGI
        hand-off", issue 14).

        Why no wake-up is lost: ``call_soon_threadsafe`` appends to the
        ready queue, then calls this.  The loop sets ``_may_block`` before
        its last look at the ready queue ahead of select(), and clears it
        once select() has returned.  With one thread running at a time,
        either the append came before that last look (the loop sees the
        callback and does not block), or after it, when the flag was
        already set and we write.  A byte written just as select() returns
        only costs one early return of the next select().
        """
        if self._may_block or not _ONE_THREAD_AT_A_TIME:
            super()._write_to_self()
    # endregion: wake-up

    # region: process-events
    def _process_events(self, event_list: list) -> None:
        """Dispatch ready sockets: connections directly, asyncio's by queue;
        then send what the connections queued meanwhile."""
        self.batch = to_flush = []
        try:
            for key, mask in event_list:
                owner = key.data
                if owner.__class__ is tuple:
                    self._queue_asyncio_handles(key, mask, owner)
                    continue
                try:
                    if mask & EVENT_READ:
                        owner.on_readable()
                    if mask & EVENT_WRITE:
                        owner.on_writable()
                except Exception as exc:
                    self._connection_failed(owner, exc)
        finally:
            self.batch = None
        for conn in to_flush:
            try:
                conn.on_writable()
            except Exception as exc:
                self._connection_failed(conn, exc)

    def _connection_failed(self, conn: Any, exc: Exception) -> None:
        # A bug of ours: report it, drop that connection, keep serving.
        self.call_exception_handler({
            "message": "error in connection callback",
            "exception": exc,
            "connection": conn,
        })
        conn.abort()
    # endregion: process-events

    # region: asyncio-handles
    def _queue_asyncio_handles(self, key: Any, mask: int, handles: tuple) -> None:
        # Exactly what asyncio's own _process_events does for its readers
        # and writers (sockets of outbound connections, the self-pipe, ...).
        reader, writer = handles
        if mask & EVENT_READ and reader is not None:
            if reader._cancelled:
                self._remove_reader(key.fileobj)
            else:
                self._ready.append(reader)
        if mask & EVENT_WRITE and writer is not None:
            if writer._cancelled:
                self._remove_writer(key.fileobj)
            else:
                self._ready.append(writer)
    # endregion: asyncio-handles

    # region: drop-cancelled-timers
    def _drop_cancelled_timers(self) -> None:
        scheduled = self._scheduled
        count = len(scheduled)
        if (count > _MIN_SCHEDULED_TIMERS
                and self._timer_cancelled_count / count > _MAX_CANCELLED_FRACTION):
            live = []
            for handle in scheduled:
                if handle._cancelled:
                    handle._scheduled = False
                else:
                    live.append(handle)
            heapq.heapify(live)
            self._scheduled = live
            self._timer_cancelled_count = 0
        else:
            while scheduled and scheduled[0]._cancelled:
                self._timer_cancelled_count -= 1
                handle = heapq.heappop(scheduled)
                handle._scheduled = False
    # endregion: drop-cancelled-timers


class StockLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, unchanged, with the same connection surface.

    Connections run on it through ``add_reader``/``add_writer``: slower,
    but a second loop to test the connection code on, and a fallback.
    """

    # No batches here: connections send at once.
    batch: Optional[list] = None

    @property
    def now(self) -> float:
        """The clock, read each time (``EventLoop.now`` is the turn's)."""
        return self.time()

    def __init__(self, selector: Optional[selectors.BaseSelector] = None) -> None:
        super().__init__(selector or make_selector())
        self._interest: dict = {}

    def add_connection(self, sock: Any, conn: Any, events: int) -> None:
        """Watch ``sock`` for ``events``, through ``add_reader``/``add_writer``."""
        self.set_interest(sock, conn, events)

    def set_interest(self, sock: Any, conn: Any, events: int) -> None:
        """Change what ``sock`` is watched for: a reader or writer added or removed."""
        fd = sock.fileno()
        old = self._interest.get(fd, 0)
        if events & EVENT_READ and not old & EVENT_READ:
            self.add_reader(fd, self._guarded, conn, conn.on_readable)
        elif old & EVENT_READ and not events & EVENT_READ:
            self.remove_reader(fd)
        if events & EVENT_WRITE and not old & EVENT_WRITE:
            self.add_writer(fd, self._guarded, conn, conn.on_writable)
        elif old & EVENT_WRITE and not events & EVENT_WRITE:
            self.remove_writer(fd)
        if events:
            self._interest[fd] = events
        else:
            self._interest.pop(fd, None)

    def remove_connection(self, sock: Any) -> None:
        """Stop watching ``sock``; harmless if it is not watched."""
        fd = sock.fileno()
        if fd < 0:
            return
        old = self._interest.pop(fd, 0)
        if old & EVENT_READ:
            self.remove_reader(fd)
        if old & EVENT_WRITE:
            self.remove_writer(fd)

    def _guarded(self, conn: Any, callback: Any) -> None:
        try:
            callback()
        except Exception as exc:
            self.call_exception_handler({
                "message": "error in connection callback",
                "exception": exc,
                "connection": conn,
            })
            conn.abort()


LOOPS = {"selectserver": EventLoop, "asyncio": StockLoop}


def new_event_loop(kind: str = "selectserver", selector: str = "auto") -> asyncio.AbstractEventLoop:
    """A fresh loop of ``kind`` (``selectserver`` or ``asyncio``) on ``selector``."""
    return LOOPS[kind](make_selector(selector))
