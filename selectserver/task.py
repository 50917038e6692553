"""Chapter 1, part 2: stepping an application coroutine by hand.

An ASGI app is a coroutine.  Something has to call ``coro.send(None)`` to
run it up to its next ``await`` of a real future, and again when that future
is done.  asyncio's ``Task`` does that through the ready queue: every step
costs a trip around the loop.  ``AppTask`` does the same job with two
shortcuts:

* the first step runs at once, inside ``start()`` (the model of CPython
  3.12's eager tasks, on every Python we support).  A hello-world app whose
  ``receive()`` and ``send()`` complete without waiting finishes inside that
  one call: no queue, no Handle, no extra turn of the loop;
* later steps run straight from the done-callback of the future the app
  awaited.

While it steps, an ``AppTask`` is asyncio's *current task*, and it answers
the parts of the ``asyncio.Task`` API that libraries use (``cancel``,
``cancelling``, ``uncancel``, ``get_coro``, ``get_name``, ``done`` ...), so
``asyncio.timeout``, anyio cancel scopes and Starlette work unchanged.

This is the only module that calls ``coro.send()`` or ``coro.throw()``.
``start()`` must be called from a loop callback, never from inside another
task's step (asyncio allows one current task at a time).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from typing import Any, Callable, Dict, Optional

_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task
CancelledError = asyncio.CancelledError

# region: states
# asyncio's names for a task's states.  A task leaves PENDING once, when its
# coroutine ends, for the state this table gives that ending.
_PENDING, _DONE, _CANCELLED = "PENDING", "FINISHED", "CANCELLED"

TRANSITIONS: Dict[str, Dict[str, str]] = {
    _PENDING: {"returned": _DONE, "raised": _DONE, "cancelled": _CANCELLED},
}
# _step() (which runs only a PENDING task) hands _finish() these: read from
# the table once, here, not once per task on the hot path.
_RETURNED, _RAISED, _CANCELLED_NOW = (
    TRANSITIONS[_PENDING]["returned"], TRANSITIONS[_PENDING]["raised"],
    TRANSITIONS[_PENDING]["cancelled"])
# endregion: states

_task_numbers = itertools.count(1)

# What next() gives back for a coroutine that has ended (see _step).
_FINISHED = object()

# Called as trace_start(task) just before a task's first step when --trace
# is on (trace.py); off, it costs one test per task.
trace_start: Optional[Callable[["AppTask"], None]] = None


class AppTask:
    """Runs one coroutine to completion, stepping it by hand.

    ``on_done(task)`` is called directly (not through the loop) when the
    coroutine returns or raises; read ``task.exception()`` there.
    ``after_step()``, when given, is called after each step but the first
    (which ``start()``'s caller follows itself), outside the step: there,
    unlike inside it, another task may start.  ``context`` is the one to
    run in (a copy of the current one by default).  What the coroutine
    returns is not kept (``result()`` is None): ASGI apps return nothing,
    and not asking for it makes the last step cheaper (see ``_step``).

    A subclass may be its own caller instead: it overrides ``_ended()`` and
    ``_stepped()``, the two methods that call ``on_done`` and
    ``after_step``, and sets the fields of ``__init__`` itself (the ASGI
    cycle does: one object per request instead of two).
    """

    __slots__ = (
        "_loop", "_coro", "_steps", "_context", "_state", "_exception",
        "_fut_waiter", "_must_cancel", "_cancel_message", "_cancel_requests",
        "_callbacks", "_name", "_on_done", "_after_step", "__weakref__",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Any,
        on_done: Optional[Callable[["AppTask"], None]] = None,
        name: Optional[str] = None,
        after_step: Optional[Callable[[], None]] = None,
        context: Optional[contextvars.Context] = None,
    ) -> None:
        self._loop = loop
        self._coro = coro
        try:
            # The coroutine as an iterator, for next() (see _step).
            self._steps = coro.__await__()
        except AttributeError:
            self._steps = coro   # a generator-based coroutine is one already
        self._context = contextvars.copy_context() if context is None else context
        self._on_done = on_done
        self._state = _PENDING
        self._exception: Optional[BaseException] = None
        self._fut_waiter: Optional[asyncio.Future] = None
        self._must_cancel = False
        self._cancel_message: Optional[str] = None
        self._cancel_requests = 0
        self._callbacks: Optional[list] = None
        self._name = name
        self._after_step = after_step

    # region: start
    def start(self) -> None:
        """Run the first step now, in the task's own context."""
        if trace_start is not None:
            trace_start(self)
        self._context.run(self._step, None)
    # endregion: start

    # -- stepping ---------------------------------------------------------------

    def _resume(self, exc: Optional[BaseException] = None) -> None:
        """A later step: the step, then ``_stepped()`` outside it."""
        self._step(exc)
        self._stepped()

    # region: hooks
    def _stepped(self) -> None:
        """After each step but the first, outside it: ``after_step()``."""
        after_step = self._after_step
        if after_step is not None:
            after_step()

    def _ended(self) -> None:
        """The coroutine has ended (``_state`` and ``_exception`` say how):
        ``on_done(task)``, once."""
        on_done = self._on_done
        if on_done is not None:
            self._on_done = None
            on_done(self)
    # endregion: hooks

    # region: step
    def _step(self, exc: Optional[BaseException] = None) -> None:
        if self._state is not _PENDING:
            return
        if self._must_cancel:
            # cancel() was called while no future could carry it.
            if not isinstance(exc, CancelledError):
                exc = CancelledError(self._cancel_message) if self._cancel_message else CancelledError()
            self._must_cancel = False
        self._fut_waiter = None
        loop = self._loop
        _enter_task(loop, self)
        try:
            if exc is None:
                # next() with a default rather than send(None): a coroutine
                # that returns None (every ASGI app) ends without a
                # StopIteration raised and caught (-1,100 instructions per
                # request, callgrind, CPython 3.11).  A value it returns
                # instead is lost on the way, hence result() is always None.
                result = next(self._steps, _FINISHED)
            else:
                try:
                    result = self._coro.throw(exc)
                except StopIteration:   # throw() made it return
                    result = _FINISHED
        except CancelledError as cancelled:
            self._finish(_CANCELLED_NOW, cancelled)
        except (KeyboardInterrupt, SystemExit) as fatal:
            self._finish(_RAISED, fatal)
            raise
        except BaseException as error:  # the app's error, handed to on_done
            self._finish(_RAISED, error)
        else:
            if result is not _FINISHED:
                self._wait_for(result)
            elif self._must_cancel:
                # Cancelled after its last await: asyncio reports it cancelled.
                self._finish(_CANCELLED_NOW, CancelledError(self._cancel_message))
            else:
                # The usual end, _finish() inline: the exception is None
                # already, and one call fewer a request (A -497 instructions,
                # benchmarks/RESULTS.md).
                self._state = _RETURNED
                self._ended()
                if self._callbacks:
                    self._call_back()
        finally:
            _leave_task(loop, self)
    # endregion: step

    # region: wait-for
    def _wait_for(self, result: Any) -> None:
        # What the coroutine yielded decides how it resumes, exactly as in
        # asyncio.Task: a future (resume when done) or None (a bare yield,
        # as asyncio.sleep(0) does: resume on the next turn).
        blocking = getattr(result, "_asyncio_future_blocking", None)
        if blocking:
            if result.get_loop() is not self._loop:
                self._loop.call_soon(self._resume, RuntimeError(
                    "task %r got future %r attached to a different loop" % (self, result)),
                    context=self._context)
                return
            result._asyncio_future_blocking = False
            result.add_done_callback(self._wakeup, context=self._context)
            self._fut_waiter = result
            if self._must_cancel and result.cancel(msg=self._cancel_message):
                self._must_cancel = False
        elif result is None:
            self._loop.call_soon(self._resume, context=self._context)
        else:
            self._loop.call_soon(self._resume, RuntimeError(
                "task got bad yield: %r" % (result,)), context=self._context)

    # endregion: wait-for

    # region: wakeup
    def _wakeup(self, future: asyncio.Future) -> None:
        try:
            future.result()
        except BaseException as exc:
            # The awaiting code re-reads the future itself; we only need to
            # resume with the exception (this also carries cancellation).
            self._resume(exc)
        else:
            self._resume(None)

    # endregion: wakeup

    # region: finish
    def _finish(self, state: str, exc: Optional[BaseException]) -> None:
        self._state = state
        self._exception = exc
        self._ended()
        if self._callbacks:
            self._call_back()

    def _call_back(self) -> None:
        """Schedule the ``add_done_callback`` callbacks, each once."""
        for callback, context in self._callbacks:
            self._loop.call_soon(callback, self, context=context)
        self._callbacks = None
    # endregion: finish

    # -- the asyncio.Task API that libraries use --------------------------------------

    def take_exception(self) -> Optional[BaseException]:
        """The exception the coroutine ended with (or None), which the task
        then no longer holds: ``exception()`` says None from now on.

        For the one who handles it (``on_done``).  Its traceback holds the
        frames that stepped this task, and with them the task: a cycle of
        references that only the garbage collector frees, keeping alive
        whatever the app's frames held -- an async generator whose
        ``finally`` would wait until then.
        """
        error, self._exception = self._exception, None
        return error

    def cancel(self, msg: Optional[str] = None) -> bool:
        """Ask the coroutine to stop: CancelledError at its current await."""
        if self._state is not _PENDING:
            return False
        self._cancel_requests += 1
        waiter = self._fut_waiter
        if waiter is not None and waiter.cancel(msg=msg):
            return True
        self._must_cancel = True
        self._cancel_message = msg
        return True

    def cancelling(self) -> int:
        """How many cancellations were asked for and not taken back (``uncancel``)."""
        return self._cancel_requests

    def uncancel(self) -> int:
        """Take back one cancellation request; returns how many are left."""
        if self._cancel_requests > 0:
            self._cancel_requests -= 1
        if self._cancel_requests == 0:
            self._must_cancel = False
        return self._cancel_requests

    def done(self) -> bool:
        """True once the coroutine has returned, raised or been cancelled."""
        return self._state is not _PENDING

    def cancelled(self) -> bool:
        """True if the task ended cancelled."""
        return self._state is _CANCELLED

    def result(self) -> Any:
        """None once done (a returned value is not kept); raises what the coroutine raised (``InvalidStateError`` while pending)."""
        if self._state is _PENDING:
            raise asyncio.InvalidStateError("result is not set")
        if self._exception is not None:
            raise self._exception
        return None

    def exception(self) -> Optional[BaseException]:
        """What the coroutine raised, or None; ``CancelledError`` is raised, not returned."""
        if self._state is _PENDING:
            raise asyncio.InvalidStateError("exception is not set")
        if self._state is _CANCELLED:
            raise self._exception or CancelledError()
        return self._exception

    def add_done_callback(self, callback: Callable, *, context: Any = None) -> None:
        """Call ``callback(task)`` from the loop once the task is done."""
        if context is None:
            context = contextvars.copy_context()
        if self._state is not _PENDING:
            self._loop.call_soon(callback, self, context=context)
        else:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append((callback, context))

    def remove_done_callback(self, callback: Callable) -> int:
        """Forget ``callback``; returns how many times it was registered."""
        if not self._callbacks:
            return 0
        before = len(self._callbacks)
        self._callbacks = [(c, x) for c, x in self._callbacks if c != callback]
        return before - len(self._callbacks)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the task runs on."""
        return self._loop

    def get_coro(self) -> Any:
        """The coroutine being stepped."""
        return self._coro

    def get_context(self) -> contextvars.Context:
        """The ``contextvars.Context`` every step runs in."""
        return self._context

    def get_name(self) -> str:
        """``AppTask-N``, numbered on first ask, unless ``set_name`` gave one."""
        if self._name is None:
            self._name = "AppTask-%d" % next(_task_numbers)
        return self._name

    def set_name(self, value: object) -> None:
        """Name the task (shown by ``repr`` and ``--trace``)."""
        self._name = str(value)

    def get_stack(self, *, limit: Optional[int] = None) -> list:
        """The coroutine's frame, if it has not ended (for debuggers)."""
        frame = getattr(self._coro, "cr_frame", None)
        return [frame] if frame is not None else []

    def __repr__(self) -> str:
        return "<AppTask %s %s coro=%r>" % (self.get_name(), self._state.lower(), self._coro)
