"""AppTask: stepping a coroutine by hand, as asyncio.Task would."""

import asyncio
import contextvars
import sys

import pytest

from selectserver.loop import EventLoop
from selectserver.task import AppTask


@pytest.fixture
def loop():
    loop = EventLoop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def run_task(loop, coro):
    """Start an AppTask from a loop callback; run until it is done."""
    done = loop.create_future()
    box = {}

    def on_done(task):
        box["task"] = task
        done.set_result(None)

    loop.call_soon(lambda: AppTask(loop, coro, on_done).start())
    loop.run_until_complete(done)
    return box["task"]


def returning(coro, box):
    """``coro`` as a coroutine that puts what it returns in ``box`` (an
    AppTask keeps no result)."""
    async def keep():
        box["value"] = await coro
    return keep()


def run_value(loop, coro):
    """run_task(), then what the coroutine returned."""
    box = {}
    task = run_task(loop, returning(coro, box))
    task.result()   # raises what it raised
    return box["value"]


def test_first_step_is_eager(loop):
    steps = []

    async def app():
        steps.append("ran")
        return 42

    finished = []
    task = AppTask(loop, app(), finished.append)
    task.start()
    assert steps == ["ran"]
    assert finished == [task]
    # What it returned is not kept (AppTask's docstring).
    assert task.done() and task.result() is None


def test_awaits_futures_and_resumes(loop):
    async def app():
        fut = loop.create_future()
        loop.call_soon(fut.set_result, "x")
        value = await fut
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return value * 2

    assert run_value(loop, app()) == "xx"


def test_is_the_current_task_while_it_runs(loop):
    seen = []

    async def app():
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    task = run_task(loop, app())
    assert seen == [task, task]
    assert asyncio.current_task(loop) is None


def test_exceptions_are_kept(loop):
    async def app():
        await asyncio.sleep(0)
        raise KeyError("boom")

    task = run_task(loop, app())
    assert isinstance(task.exception(), KeyError)
    with pytest.raises(KeyError):
        task.result()


def test_cancel_while_waiting(loop):
    async def app():
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            return "cleaned up"

    done = loop.create_future()
    box = {}
    task = AppTask(loop, returning(app(), box), lambda t: done.set_result(t))
    loop.call_soon(task.start)
    loop.call_soon(loop.call_soon, task.cancel)
    loop.run_until_complete(done)
    assert not task.cancelled() and box["value"] == "cleaned up"
    assert task.cancelling() == 1


def test_cancel_propagates_as_cancelled(loop):
    async def app():
        await loop.create_future()

    done = loop.create_future()
    task = AppTask(loop, app(), lambda t: done.set_result(t))
    loop.call_soon(task.start)
    loop.call_soon(loop.call_soon, task.cancel, "stop")
    loop.run_until_complete(done)
    assert task.cancelled()
    with pytest.raises(asyncio.CancelledError):
        task.result()


def test_context_is_copied_per_task(loop):
    var = contextvars.ContextVar("var", default="outer")

    async def app():
        var.set("inner")
        await asyncio.sleep(0)
        return var.get()

    assert run_value(loop, app()) == "inner"
    assert var.get() == "outer"


def test_wait_for_and_gather_inside(loop):
    async def child(n):
        await asyncio.sleep(0)
        return n

    async def app():
        values = await asyncio.gather(child(1), child(2))
        value = await asyncio.wait_for(child(3), timeout=5)
        return values + [value]

    assert run_value(loop, app()) == [1, 2, 3]


def test_wait_for_times_out(loop):
    async def app():
        try:
            await asyncio.wait_for(loop.create_future(), timeout=0.01)
        except asyncio.TimeoutError:
            return "timed out"

    assert run_value(loop, app()) == "timed out"


def test_timeouts_use_cancel_and_uncancel(loop):
    # asyncio.timeout (3.11+) cancels the task and then uncancels it; on
    # older Pythons the same calls are made by hand.
    async def app():
        task = asyncio.current_task()
        if sys.version_info >= (3, 11):
            try:
                async with asyncio.timeout(0.01):
                    await loop.create_future()
            except TimeoutError:
                return task.cancelling()
        loop.call_later(0.01, task.cancel)
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            assert task.cancelling() == 1
            return task.uncancel()

    assert run_value(loop, app()) == 0


def test_bad_yield_becomes_an_error(loop):
    class Weird:
        def __await__(self):
            yield "not a future"

    async def app():
        await Weird()

    task = run_task(loop, app())
    assert isinstance(task.exception(), RuntimeError)


def test_done_callbacks_and_task_api(loop):
    async def app():
        return 1

    task = AppTask(loop, app(), name="worker-1")
    seen = []
    task.add_done_callback(seen.append)
    assert task.get_name() == "worker-1"
    assert task.get_loop() is loop
    assert task.get_coro() is not None
    loop.call_soon(task.start)
    loop.run_until_complete(asyncio.sleep(0.001))
    assert seen == [task]
    assert task.cancel() is False
