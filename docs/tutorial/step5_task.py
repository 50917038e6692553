"""Step 5, part 1: what an asyncio Task does, in forty lines.

A coroutine runs when someone calls its send(); it stops at an await of
something that yields (here a Future) and hands that Future back to the
caller of send().  A Task is that caller: it steps the coroutine, and when
the Future is done it steps it again with the result.  throw() resumes
the coroutine by raising an exception where it waits.  step5_coroutines.py
runs ASGI apps on this; docs/tutorial/step5_coroutines.md explains both.
"""

import time

from step4_timers import Timers

TIMERS = Timers()   # the one loop's timers; asyncio's get_running_loop() in miniature


# region: future
class Future:
    """A result that is not there yet.  ``await future`` waits for it."""

    def __init__(self):
        self.done, self.result, self.callbacks = False, None, []

    def set_result(self, result):
        self.done, self.result = True, result
        for callback in self.callbacks:
            callback(self)

    def __await__(self):
        if not self.done:
            yield self      # up through every await, out of the Task's send()
        return self.result


def sleep(seconds):
    future = Future()
    TIMERS.call_at(time.monotonic() + seconds, lambda: future.set_result(None))
    return future
# endregion: future


# region: task
class Task:
    """Steps a coroutine: send() runs it to its next await of a Future."""

    def __init__(self, coro, on_done):
        self.coro, self.on_done, self.waiting_on = coro, on_done, None

    def step(self, value=None, error=None):
        try:
            if error is None:
                future = self.coro.send(value)
            else:
                future = self.coro.throw(error)   # raised at the app's await
        except StopIteration:
            self.on_done(None)
        except Exception as exc:
            self.on_done(exc)
        else:
            self.waiting_on = future
            future.callbacks.append(self.wake_up)

    def wake_up(self, future):
        if future is self.waiting_on:   # not one we stopped waiting for
            self.step(future.result)

    def throw(self, error):
        self.waiting_on = None
        self.step(error=error)
# endregion: task
