"""The thread-to-loop bridge: how an app's thread asks the loop to act.

Threads never touch a socket (DESIGN.md decision 6).  Whatever a WSGI app
says goes to the loop as a callback, and only the loop calls the
connection.  ``loop.call_soon_threadsafe`` writes a byte to the loop's
self-pipe on every call that may find it blocked in select(); a
``LoopQueue`` calls it once per batch.

This module knows nothing of HTTP or of WSGI: it moves callables.
Invariant: callbacks run on the loop, in the order they were queued.
"""

from __future__ import annotations

import collections
from functools import partial
from typing import Any, Callable, Dict


class LoopQueue:
    """Callbacks from app threads to the loop, with one wake-up per batch.

    Only the first call of a batch wakes the loop; later ones join the
    batch while the loop has not run it yet.  Measured with a hello app
    under wrk -c64: 3.4 context switches per request before, 0.3 after.
    """

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._pending: collections.deque = collections.deque()
        # The right to wake the loop: present while no batch is scheduled.
        self._token: Dict[bool, bool] = {True: True}

    # region: loop-queue
    def call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop; RuntimeError if the loop is closed."""
        # The queue holds callables of no arguments: a callback given alone
        # (the usual response's: WSGICycle._respond_whole) is queued as it
        # is, one with arguments as a partial.  No (callback, args) pair to
        # build and unpack, and a call without arguments to make: 310 ->
        # 160 ns for a callback queued and run (timeit), WSGI hello -660
        # instructions per request (callgrind, CPython 3.11;
        # benchmarks/RESULTS.md, "the hand-off, leaner", issue 14).
        self._pending.append(partial(callback, *args) if args else callback)
        # The caller that takes the token schedules the batch; the batch
        # gives it back before it takes callbacks, so a callback queued
        # while the token is out is taken by the batch that holds it.
        # Taking is one dict.pop(), atomic on its own (under the GIL, and
        # under the dict's own lock without one): a lock's acquire() and
        # release() around a flag cost 830 instructions more per request
        # (callgrind, CPython 3.11; benchmarks/RESULTS.md, "WSGI, leaner").
        if self._token.pop(True, False) is False:
            return   # a batch is scheduled and has not started: it will take this
        try:
            self._loop.call_soon_threadsafe(self._run_batch)
        except RuntimeError:
            self._token[True] = True
            raise

    def _run_batch(self) -> None:
        # Before taking: a callback queued from now on schedules its own batch.
        self._token[True] = True
        pending = self._pending
        while pending:
            callback = pending.popleft()
            try:
                callback()
            except Exception as exc:
                self._loop.call_exception_handler({
                    "message": "error in a WSGI callback", "exception": exc})
    # endregion: loop-queue
