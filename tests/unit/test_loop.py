"""The run-once step, on a fake selector and a fake clock."""

import asyncio
import selectors

import pytest

from selectserver.loop import EVENT_READ, EVENT_WRITE, EventLoop, StockLoop, make_selector


class FakeSelector(selectors.BaseSelector):
    """A selector whose select() returns scripted events and records timeouts."""

    def __init__(self):
        self._keys = {}
        self.script = []
        self.timeouts = []

    def register(self, fileobj, events, data=None):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def modify(self, fileobj, events, data=None):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd not in self._keys:
            raise KeyError(fd)
        return self.register(fileobj, events, data)

    def select(self, timeout=None):
        self.timeouts.append(timeout)
        if not self.script:
            return []
        return [(self._keys[fd], mask) for fd, mask in self.script.pop(0)]

    def get_map(self):
        return self._keys

    def close(self):
        self._keys.clear()


class FakeFile:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


class FakeConnection:
    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def on_readable(self):
        self.calls.append("read")
        if self.fail:
            raise ValueError("bug")

    def on_writable(self):
        self.calls.append("write")

    def abort(self):
        self.calls.append("abort")


@pytest.fixture
def loop():
    selector = FakeSelector()
    loop = EventLoop(selector)
    now = [1000.0]
    loop.time = lambda: now[0]
    loop.clock = now
    loop.fake_selector = selector
    yield loop
    loop.close()


def test_private_attributes_we_rely_on_exist():
    loop = EventLoop()
    try:
        for name in ("_ready", "_scheduled", "_stopping", "_selector",
                     "_clock_resolution", "_timer_cancelled_count"):
            assert hasattr(loop, name), name
        handle = loop.call_later(10, lambda: None)
        for name in ("_when", "_cancelled", "_scheduled", "_run"):
            assert hasattr(handle, name), name
        assert handle in loop._scheduled
        assert hasattr(loop, "_remove_reader") and hasattr(loop, "_remove_writer")
    finally:
        loop.close()


def test_connection_events_are_dispatched_directly(loop):
    conn = FakeConnection()
    loop.add_connection(FakeFile(50), conn, EVENT_READ)
    loop.fake_selector.script = [[(50, EVENT_READ | EVENT_WRITE)]]
    loop._run_once()
    assert conn.calls == ["read", "write"]
    assert not loop._ready


def test_set_interest_zero_unregisters_and_nonzero_registers_again(loop):
    conn = FakeConnection()
    sock = FakeFile(51)
    loop.add_connection(sock, conn, EVENT_READ)
    loop.set_interest(sock, conn, 0)
    assert 51 not in loop.fake_selector.get_map()
    loop.set_interest(sock, conn, EVENT_WRITE)
    assert loop.fake_selector.get_map()[51].events == EVENT_WRITE
    loop.remove_connection(sock)
    loop.remove_connection(sock)  # harmless twice
    assert 51 not in loop.fake_selector.get_map()


def test_a_failing_callback_is_reported_and_the_connection_aborted(loop):
    reports = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    bad, good = FakeConnection(fail=True), FakeConnection()
    loop.add_connection(FakeFile(52), bad, EVENT_READ)
    loop.add_connection(FakeFile(53), good, EVENT_READ)
    loop.fake_selector.script = [[(52, EVENT_READ), (53, EVENT_READ)]]
    loop._run_once()
    assert bad.calls == ["read", "abort"]
    assert good.calls == ["read"]
    assert isinstance(reports[0]["exception"], ValueError)


def test_select_blocks_until_the_first_timer(loop):
    fired = []
    loop.call_later(5, fired.append, "late")
    loop.call_later(2, fired.append, "early")
    loop._run_once()
    assert loop.fake_selector.timeouts[-1] == pytest.approx(2)
    assert fired == []
    loop.clock[0] += 2
    loop._run_once()              # due timers run in the same turn
    assert fired == ["early"]
    assert loop.fake_selector.timeouts[-1] == 0
    loop.clock[0] += 3
    loop._run_once()
    assert fired == ["early", "late"]


def test_select_does_not_block_when_callbacks_are_ready(loop):
    loop.call_soon(lambda: None)
    loop._run_once()
    assert loop.fake_selector.timeouts == [0]


def test_select_blocks_forever_with_nothing_to_do(loop):
    loop._run_once()
    assert loop.fake_selector.timeouts == [None]


def test_callbacks_queued_by_callbacks_run_next_turn(loop):
    order = []

    def first():
        order.append("first")
        loop.call_soon(order.append, "second")

    loop.call_soon(first)
    loop._run_once()
    assert order == ["first"]
    loop._run_once()
    assert order == ["first", "second"]


def test_cancelled_timers_are_dropped(loop):
    handles = [loop.call_later(100 + i, lambda: None) for i in range(300)]
    for handle in handles[:200]:
        handle.cancel()
    loop._run_once()
    assert len(loop._scheduled) == 100
    assert loop._timer_cancelled_count == 0
    assert loop._scheduled[0] is min(loop._scheduled)


def test_make_selector_names():
    assert isinstance(make_selector("select"), selectors.SelectSelector)
    assert isinstance(make_selector("auto"), selectors.BaseSelector)
    with pytest.raises(ValueError, match="not available"):
        make_selector("no-such-backend")


@pytest.mark.parametrize("loop_class", [EventLoop, StockLoop])
def test_asyncio_apis_work_on_both_loops(loop_class):
    loop = loop_class()
    try:
        async def main():
            assert asyncio.get_running_loop() is loop
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            task = asyncio.ensure_future(asyncio.sleep(0, result=7))
            return await task

        assert loop.run_until_complete(main()) == 7
    finally:
        loop.close()


class FlushingConnection(FakeConnection):
    """Reads, then asks to be flushed at the end of the batch."""

    def __init__(self, loop, name, log, fail_flush=False):
        super().__init__()
        self.loop, self.name, self.log, self.fail_flush = loop, name, log, fail_flush

    def on_readable(self):
        self.log.append(self.name + " read")
        self.loop.batch.append(self)

    def on_writable(self):   # called for the flush at the batch's end
        self.log.append(self.name + " flush")
        if self.fail_flush:
            raise ValueError("bug")

    def abort(self):
        self.log.append(self.name + " abort")


def test_connections_are_flushed_after_every_ready_socket_was_served(loop):
    log = []
    a, b = FlushingConnection(loop, "a", log), FlushingConnection(loop, "b", log)
    loop.add_connection(FakeFile(60), a, EVENT_READ)
    loop.add_connection(FakeFile(61), b, EVENT_READ)
    loop.fake_selector.script = [[(60, EVENT_READ), (61, EVENT_READ)]]
    loop._run_once()
    assert log == ["a read", "b read", "a flush", "b flush"]
    # Outside the dispatch there is no batch: the caller sends at once.
    assert loop.batch is None


def test_a_failing_flush_is_reported_and_the_connection_aborted(loop):
    reports = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    log = []
    bad = FlushingConnection(loop, "bad", log, fail_flush=True)
    good = FlushingConnection(loop, "good", log)
    loop.add_connection(FakeFile(62), bad, EVENT_READ)
    loop.add_connection(FakeFile(63), good, EVENT_READ)
    loop.fake_selector.script = [[(62, EVENT_READ), (63, EVENT_READ)]]
    loop._run_once()
    assert log == ["bad read", "good read", "bad flush", "bad abort", "good flush"]
    assert isinstance(reports[0]["exception"], ValueError)


def test_the_stock_loop_has_no_batches():
    loop = StockLoop()
    try:
        assert loop.batch is None
    finally:
        loop.close()


# -- waking the loop from another thread (EventLoop._write_to_self) ---------------------


@pytest.fixture
def wake_ups(monkeypatch):
    """Counts the bytes the loop's wake-up would write to its self-pipe."""
    written = []
    monkeypatch.setattr(asyncio.SelectorEventLoop, "_write_to_self",
                        lambda self: written.append(self))
    return written


def test_a_busy_loop_is_not_woken(loop, wake_ups):
    loop.call_soon_threadsafe(lambda: None)
    assert wake_ups == []
    loop._run_once()
    assert loop.fake_selector.timeouts == [0]   # the callback is seen without a byte


def test_a_loop_that_may_block_is_woken(loop, wake_ups):
    ran = []

    class QueueDuringSelect(FakeSelector):
        def select(self, timeout=None):
            # Another thread queues while the loop sleeps in select().
            assert loop._may_block
            loop.call_soon_threadsafe(ran.append, "late")
            return super().select(timeout)

    selector = QueueDuringSelect()
    loop._selector = selector
    loop._run_once()
    assert selector.timeouts == [None] and wake_ups == [loop]
    assert not loop._may_block
    assert ran == ["late"]     # run in the same turn, after the select


def test_a_callback_queued_just_before_the_flag_is_seen_without_a_byte(wake_ups):
    # The race the flag's order closes: a thread appends after the loop's
    # first look at the ready queue, before it says it may block.
    class Racy(EventLoop):
        inject = False

        @property
        def _stopping(self):
            if self.inject:
                self.inject = False
                self.call_soon_threadsafe(lambda: None)
            return self._stop_asked

        @_stopping.setter
        def _stopping(self, value):
            self._stop_asked = value

    selector = FakeSelector()
    racy = Racy(selector)
    try:
        racy.inject = True
        racy._run_once()
        assert wake_ups == []            # the flag was not set yet: no byte...
        assert selector.timeouts == [0]  # ...and the loop did not block
    finally:
        racy.close()


def test_now_is_the_clock_as_each_part_of_the_turn_begins(loop):
    # Read once select() returns (what the events see) and again before the
    # ready callbacks run (what they see); connections set deadlines from it.
    seen = []

    class Reader(FakeConnection):
        def on_readable(self):
            seen.append(("event", loop.now))
            loop.clock[0] += 0.5        # the batch of events takes time
            loop.call_soon(lambda: seen.append(("callback", loop.now)))

    reader = Reader()
    loop.add_connection(FakeFile(7), reader, selectors.EVENT_READ)
    loop.fake_selector.script.append([(7, selectors.EVENT_READ)])
    loop.clock[0] = 1003.0              # select() returned at 1003
    loop._run_once()
    assert seen == [("event", 1003.0), ("callback", 1003.5)]
