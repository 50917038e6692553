"""The pool and the handler: how a request reaches a thread, or is refused.

``make_handler`` gives the connection its request handler for a WSGI app.
For each request the handler builds the environ and a ``WSGICycle``; the
cycle collects the body on the loop (unless ``--wsgi-stream-input``), then
goes to the pool's queue.  ``--threads`` threads take cycles from it.

The queue is bounded: when ``--threads-queue`` requests already wait for a
thread, the next one is answered 503 with ``Retry-After`` and ``Connection:
close`` without calling the app.  Waiting longer than the bound allows
would only hand the app work whose client has likely given up.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from typing import Any, Callable, List, Tuple

from ..connection import Connection
from ..http11.events import Request
from ..proxy import from_config as trusted_proxies
from .bridge import LoopQueue
from .cycle import RECEIVING, WSGICycle, body_at_head
from .environ import Environs, script_name_of
from .files import FileWrapper

log = logging.getLogger("selectserver.error")

# A refused client may try again this soon: a queue that was full drains
# within about a second unless the app itself is slow.
RETRY_AFTER_S = 1

# --threads-queue's default, per thread: a request waits behind at most this
# many others per thread.  32 keeps wrk -c64 against --threads 2 unrefused.
QUEUE_PER_THREAD = 32


# region: no-wakeup-preemption
def _not_preempting_on_wakeup() -> None:
    """Ask Linux not to let this thread preempt the thread that wakes it.

    The loop wakes a pool thread while it holds the GIL (``put()`` on the
    queue), and a thread handing a response back may wake the loop.  A
    thread of the usual policy that is woken may preempt its waker on the
    spot, find the GIL taken and sleep again: two context switches for
    nothing, each some microseconds on a virtual machine.  ``SCHED_BATCH``
    keeps the thread's share of the CPU (same nice weight) and gives up
    only that preemption: the woken thread runs when its waker next blocks
    (in ``select()``, or waiting for the GIL), which it does soon.  Under
    wrk -c64, one worker on one CPU: 0.21 -> 0.06 context switches and
    14.0 -> 13.6 us CPU per request (benchmarks/RESULTS.md, "the WSGI
    environ and cycle, cheaper", issue 14).  What it costs: on a CPU shared
    with other busy processes, a woken app thread may wait for the running
    one's time slice (a few milliseconds at most).  The loop's own thread
    keeps the usual policy; threads an app starts from a pool thread
    inherit this one.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: the thread is woken as usual
# endregion: no-wakeup-preemption


class ThreadPool:
    """``size`` threads running cycles from one queue."""

    def __init__(self, size: int, name: str = "selectserver-wsgi") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._name = name
        self._threads: List[threading.Thread] = []
        self._stopping = False
        # The cycles queued that no thread has taken yet (the queue's own C
        # method: asked once per request).
        self.waiting: Callable[[], int] = self._queue.qsize
        # Queue a cycle for a thread: the queue's own C method too, not a
        # method of ours around it (one Python call less per request, WSGI
        # hello -510 instructions; benchmarks/RESULTS.md, "the hand-off,
        # leaner", issue 14).
        self.submit: Callable[[WSGICycle], None] = self._queue.put
        for _ in range(size):
            self._start_thread()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, daemon=True,
                                  name="%s-%d" % (self._name, len(self._threads)))
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        _not_preempting_on_wakeup()
        get = self._queue.get
        try:
            while True:
                cycle = get()
                if cycle is None:
                    return
                try:
                    cycle.run()
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
    script_name = script_name_of(config.root_path)
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
    buffered = not config.wsgi_stream_input
    queue_limit = config.threads_queue or QUEUE_PER_THREAD * config.threads
    submit = pool.submit
    waiting = pool.waiting
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

    def enqueue(cycle: WSGICycle) -> None:
        if len(started) + waiting() >= queue_limit:
            cycle.refuse_on_loop(RETRY_AFTER_S)
            return
        if not started:
            loop.call_soon(submit_started)
        started.append(cycle)

    environs = Environs(base, script_name, trusted_proxies(config))

    def handle(conn: Connection, request: Request) -> None:
        body = None
        if buffered and request.content_length:
            body = body_at_head(conn, request, conn.server.read_high_bytes)
        environ = environs.build(conn, request)
        cycle = WSGICycle(conn, app, request, to_loop, environ, buffered, body)
        conn.cycle = cycle
        if cycle.state is RECEIVING:
            cycle.on_body = enqueue
            cycle.receive_on_loop()
        else:
            enqueue(cycle)

    def shutdown() -> None:
        pool.shutdown(config.timeout_graceful_shutdown_s)

    return handle, shutdown
