"""Step 4: timers and deadlines.

Step 3 waits for a client for ever.  A client that connects and never sends,
or sends its request one byte a minute (the "slowloris" attack), keeps a
connection and its memory for good; with enough of them the server runs out.
This step gives every connection a deadline for what it waits for: the next
request on an idle keep-alive connection, the rest of a request head once it
has begun.  Deadlines live in a heap, and the earliest one is how long
select() may sleep.  docs/tutorial/step4_timers.md explains it.

    python3 docs/tutorial/step4_timers.py --port 8004 --head-timeout 2
"""

import heapq
import itertools
import selectors
import sys
import time

import step3_states as step3
from step1_blocking import main, response
from step3_states import State


# region: timers
class Timers:
    """Callbacks due at a time, in a heap: the earliest is always first."""

    def __init__(self):
        self.heap = []
        self.order = itertools.count()  # breaks ties: callbacks do not compare

    def call_at(self, when, callback):
        timer = [when, next(self.order), callback]
        heapq.heappush(self.heap, timer)
        return timer

    def cancel(self, timer):
        # Removing from the middle of a heap is O(n); forget the callback
        # instead and drop the entry when it comes to the top.
        timer[2] = None

    def timeout(self, now):
        """How long select() may sleep: until the earliest timer, or for ever."""
        return max(0.0, self.heap[0][0] - now) if self.heap else None

    def run_due(self, now):
        while self.heap and self.heap[0][0] <= now:
            callback = heapq.heappop(self.heap)[2]
            if callback is not None:
                callback()
# endregion: timers


class Connection(step3.Connection):
    def __init__(self, selector, sock, timers, keep_alive_timeout, head_timeout):
        self.timers = timers
        self.timeouts = {"request": keep_alive_timeout, "head": head_timeout}
        self.waiting_for = None         # "request", "head", or None while writing
        self.timer = None
        super().__init__(selector, sock)
        self.update_deadline()

    # region: update_deadline
    def update_deadline(self):
        """Start the deadline of what the connection now waits for, unless
        it already runs: trickling bytes into a head does not extend it."""
        if self.state is State.READING:
            waiting_for = "head" if self.received else "request"
        else:
            waiting_for = None          # a slow reader: see step 3's backpressure
        if waiting_for == self.waiting_for:
            return
        self.waiting_for = waiting_for
        if self.timer is not None:
            self.timers.cancel(self.timer)
            self.timer = None
        if waiting_for is not None:
            when = time.monotonic() + self.timeouts[waiting_for]
            self.timer = self.timers.call_at(when, self.on_timeout)
    # endregion: update_deadline

    def set_state(self, new):
        super().set_state(new)
        if new is State.CLOSED and self.timer is not None:
            self.timers.cancel(self.timer)

    # region: on_timeout
    def on_timeout(self):
        self.timer = None
        if self.waiting_for == "head":
            # RFC 9110 §15.5.9: tell a client that began a request why we close.
            try:
                self.sock.send(response("408 Request Timeout", b"too slow\n", keep_alive=False))
            except OSError:
                pass
        # An idle keep-alive connection is closed without a word.
        self.set_state(State.CLOSED)
    # endregion: on_timeout


# region: serve
def serve(listener, keep_alive_timeout=5.0, head_timeout=10.0):
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    timers = Timers()
    while True:
        # Sleep until a socket is ready or the earliest deadline, whichever is first.
        events = selector.select(timers.timeout(time.monotonic()))
        for key, mask in events:
            if key.data is None:
                try:
                    sock, address = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                Connection(selector, sock, timers, keep_alive_timeout, head_timeout)
                continue
            conn = key.data
            if mask & selectors.EVENT_READ:
                conn.on_readable()
            elif mask & selectors.EVENT_WRITE:
                conn.on_writable()
            if conn.state is not State.CLOSED:
                conn.update_deadline()
        timers.run_due(time.monotonic())
# endregion: serve


if __name__ == "__main__":
    sys.exit(main(serve, __doc__, 8004,
                  [("--keep-alive-timeout", float, 5.0), ("--head-timeout", float, 10.0)]))
