"""A worker as the master sees it: the table, and the master's answers to each event.

The table is checked pair by pair.  The master is then driven without
forking: ``_spawn`` makes a ``WorkerProcess`` with a made-up pid and
``_kill`` records the signal, so every step (a message, an exit, a
deadline) is a plain call with an explicit clock.
"""

from __future__ import annotations

import itertools
import os
import signal

import pytest

from selectserver import master as master_module
from selectserver.config import Config
from selectserver.master import (
    BOOTING, EXIT, EXIT_APP_BOOT, KILLED, MESSAGE_MAX_REQUESTS, MESSAGE_READY, QUITTING,
    RECYCLED, REPLACING, RETIRING, SERVING, STOP, STOPPING, WORKER_TRANSITIONS, Master,
    TransitionError, WorkerEvent, WorkerProcess, WorkerState, next_state)

FORBIDDEN = [pair for pair in itertools.product(WorkerState, WorkerEvent)
             if pair not in WORKER_TRANSITIONS]


@pytest.mark.parametrize("state, event", list(WORKER_TRANSITIONS), ids=lambda x: x.name)
def test_every_allowed_transition(state, event):
    worker = WorkerProcess(100, 0, -1, 0.0)
    worker.state = state
    assert worker.apply(event) is state
    assert worker.state is WORKER_TRANSITIONS[state, event]


@pytest.mark.parametrize("state, event", FORBIDDEN, ids=lambda x: x.name)
def test_a_forbidden_transition_raises(state, event):
    worker = WorkerProcess(100, 0, -1, 0.0)
    worker.state = state
    with pytest.raises(TransitionError):
        worker.apply(event)
    assert worker.state is state


def test_the_table_is_whole():
    reachable = {BOOTING} | set(WORKER_TRANSITIONS.values())
    assert reachable == set(WorkerState)
    # Whatever a worker is doing, it can die; a killed one can do nothing else.
    assert all((state, EXIT) in WORKER_TRANSITIONS for state in WorkerState if state is not WorkerState.EXITED)
    assert [event for state, event in WORKER_TRANSITIONS if state is KILLED] == [EXIT]
    with pytest.raises(TransitionError):
        next_state(WorkerState.EXITED, EXIT)


class FakeMaster(Master):
    """A Master that forks nothing and signals nobody."""

    def __init__(self, **options):
        super().__init__(Config(app="app:app", **options), [])
        self.pids = itertools.count(1000)
        self.sent = []
        self.write_ends = {}

    def _spawn(self, slot, now):
        read_end, write_end = os.pipe()
        worker = master_module.WorkerProcess(next(self.pids), slot, read_end, now)
        self.write_ends[worker.pid] = write_end
        self.workers[worker.pid] = worker
        self.selector.register(read_end, master_module.selectors.EVENT_READ, self._on_message)
        return worker

    def _kill(self, worker, signum):
        self.sent.append((worker.pid, signum))

    def close(self):
        self.selector.close()
        fds = [self._wakeup_read, self._wakeup_write, *self.write_ends.values()]
        for fd in fds + [worker.pipe for worker in self.workers.values()]:
            os.close(fd)

    # what the real loop would do on one turn at ``now``
    def turn(self, now):
        self._check_workers(now)
        if self.stopping is None:
            self._step_roll(now)
            self._spawn_missing(now)

    def say(self, worker, message, now):
        os.write(self.write_ends[worker.pid], message)
        master_module.time.monotonic, real = (lambda: now), master_module.time.monotonic
        try:
            self._on_message(worker.pipe)
        finally:
            master_module.time.monotonic = real

    def states(self):
        return sorted((w.slot, w.state.name) for w in self.workers.values())

    def serving(self, now):
        for worker in list(self.workers.values()):
            if worker.state is BOOTING:
                self.say(worker, MESSAGE_READY, now)


@pytest.fixture
def make_master():
    masters = []

    def make(**options):
        master = FakeMaster(**options)
        masters.append(master)
        for _ in range(2):   # the first worker boots alone, then the rest
            master.turn(0.0)
            master.serving(0.0)
        return master

    yield make
    for master in masters:
        master.close()


def test_start_fills_every_slot(make_master):
    master = make_master(workers=2)
    assert master.states() == [(0, "SERVING"), (1, "SERVING")]


def test_until_one_worker_is_ready_one_boots_alone():
    master = FakeMaster(workers=3)
    try:
        master.turn(0.0)
        master.turn(0.1)
        assert master.states() == [(0, "BOOTING")]
        master.serving(0.2)
        master.turn(0.2)
        assert master.states() == [(0, "SERVING"), (1, "BOOTING"), (2, "BOOTING")]
    finally:
        master.close()


def test_a_rolling_replacement_starts_the_new_worker_first(make_master):
    master = make_master(workers=2)
    old = sorted(master.workers)
    master._replace_all("SIGHUP")
    master.turn(1.0)
    assert master.states() == [(0, "BOOTING"), (0, "REPLACING"), (1, "SERVING")]
    assert master.sent == []
    master.turn(1.1)   # one at a time: nothing new while a successor boots
    assert len(master.workers) == 3
    master.serving(1.2)
    assert (old[0], signal.SIGTERM) in master.sent
    assert master.workers[old[0]].state is RETIRING
    master.turn(1.3)
    assert master.states() == [(0, "RETIRING"), (0, "SERVING"), (1, "BOOTING"), (1, "REPLACING")]
    master.serving(1.4)
    master._on_exit(old[0], 0, 1.5)
    master._on_exit(old[1], 0, 1.5)
    assert master.states() == [(0, "SERVING"), (1, "SERVING")]


@pytest.mark.parametrize("victim", ["predecessor", "successor", "retiring", "waiting"])
def test_a_worker_killed_during_a_reload_is_replaced_at_once(make_master, victim):
    master = make_master(workers=2)
    first, second = sorted(master.workers)
    master._replace_all("SIGHUP")
    master.turn(1.0)
    successor = max(master.workers)
    if victim == "retiring":
        master.serving(1.1)
        assert master.workers[first].state is RETIRING
        pid = first
    else:
        pid = {"predecessor": first, "successor": successor, "waiting": second}[victim]
    master._on_exit(pid, -signal.SIGKILL, 2.0)
    # The loop's turns for the next second: a slot is held or refilled, and
    # the reload goes on.
    for step in range(10):
        master.turn(2.0 + step / 10)
        master.serving(2.0 + step / 10)
    for step in range(3):
        for worker in list(master.workers.values()):
            if worker.state is RETIRING:
                master._on_exit(worker.pid, 0, 3.0)
        master.turn(3.0)
        master.serving(3.0)
    assert master.states() == [(0, "SERVING"), (1, "SERVING")]
    assert first not in master.workers and second not in master.workers


def test_a_killed_successor_is_started_again_within_a_second(make_master):
    master = make_master(workers=1)
    (old,) = master.workers
    master._replace_all("SIGHUP")
    master.turn(1.0)
    successor = max(master.workers)
    master._on_exit(successor, -signal.SIGKILL, 1.5)
    assert master.workers[old].state is SERVING
    master.turn(1.5 + master_module.BACKOFF_FIRST_S)
    assert master.states() == [(0, "BOOTING"), (0, "REPLACING")]


@pytest.mark.expect_errors(r"^New worker \d+ failed to boot \(exit code 3\); the old workers keep serving$")
def test_a_broken_successor_leaves_the_old_worker_serving(make_master):
    master = make_master(workers=2)
    master._replace_all("SIGHUP")
    master.turn(1.0)
    successor = max(master.workers)
    master._on_exit(successor, EXIT_APP_BOOT, 1.5)
    for step in range(5):
        master.turn(2.0 + step)
    assert master.states() == [(0, "SERVING"), (1, "SERVING")]
    assert not master.roll_queue


@pytest.mark.expect_errors(r"^Worker \d+ was stuck for \d+s; its stack follows, then it is killed$")
def test_a_stuck_worker_dumps_its_stack_is_killed_and_its_slot_refilled_at_once(make_master):
    master = make_master(workers=1, timeout_worker_s=5.0)
    (stuck,) = master.workers
    master.turn(6.0)
    assert master.sent == [(stuck, signal.SIGUSR2)]
    assert master.states() == [(0, "BOOTING"), (0, "STUCK")]
    master.turn(6.0 + master_module.STACK_DUMP_S)
    assert master.sent[-1] == (stuck, signal.SIGKILL)
    assert master.workers[stuck].state is KILLED


def test_max_requests_message_retires_without_a_signal_and_refills_the_slot(make_master):
    master = make_master(workers=1)
    (worker,) = master.workers
    master.say(master.workers[worker], MESSAGE_MAX_REQUESTS, 1.0)
    assert master.workers[worker].state is RETIRING
    assert master.sent == []   # it stops by itself
    master.turn(1.0)
    assert master.states() == [(0, "BOOTING"), (0, "RETIRING")]


def test_a_retiring_worker_past_its_deadline_is_killed(make_master):
    master = make_master(workers=1, timeout_graceful_shutdown_s=2.0)
    (worker,) = master.workers
    master._advance(master.workers[worker], RECYCLED, 1.0)
    master.turn(1.0 + 2.0 + master_module.LIFESPAN_SHUTDOWN_MARGIN_S + 0.1)
    assert master.workers[worker].state is KILLED
    assert master.sent[-1] == (worker, signal.SIGKILL)


def test_stop_then_stop_now(make_master):
    master = make_master(workers=2)
    master._stop(STOP, 1.0)
    assert {w.state for w in master.workers.values()} == {STOPPING}
    assert sorted(signum for _, signum in master.sent) == [signal.SIGTERM] * 2
    master._stop(master_module.STOP_NOW, 1.5)
    assert {w.state for w in master.workers.values()} == {QUITTING}
    master.turn(1.5 + master_module.IMMEDIATE_STOP_S + 0.1)
    assert {w.state for w in master.workers.values()} == {KILLED}


def test_ttou_retires_the_last_slot(make_master):
    master = make_master(workers=2)
    master._on_signal(signal.SIGTTOU, 1.0)
    assert master.states() == [(0, "SERVING"), (1, "RETIRING")]
    master.turn(1.0)
    assert len(master.workers) == 2


@pytest.mark.expect_errors(r"^Worker \d+ did not boot for \d+s; its stack follows, then it is killed$", "^The old workers keep serving$")
def test_booting_successor_killed_for_silence_gives_up_the_reload(make_master):
    master = make_master(workers=2, timeout_worker_s=5.0)
    master._replace_all("SIGHUP")
    master.turn(1.0)
    successor = max(master.workers)
    for worker in master.workers.values():
        if worker.state is not BOOTING:
            worker.last_heard = 6.5   # the old ones beat on
    master.turn(6.5)
    assert master.workers[successor].state is master_module.STUCK
    assert master.states() == [(0, "SERVING"), (0, "STUCK"), (1, "SERVING")]
    assert not master.roll_queue


def test_ready_is_taken_once(make_master):
    master = make_master(workers=1)
    (worker,) = master.workers
    master.say(master.workers[worker], MESSAGE_READY + b".", 1.0)
    assert master.workers[worker].state is SERVING   # a second R changes nothing
