"""Signals sent to the master: graceful and immediate stops, SIGHUP, SIGTTIN/SIGTTOU."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from .processes import (Load, app_dir, connect_refused, get, start, wait_until,  # noqa: F401 (fixtures)
                        write_app)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")


class Request(threading.Thread):
    """A request in flight on its own thread; ``result`` once it is answered."""

    def __init__(self, address, path):
        super().__init__(daemon=True)
        self.address, self.path = address, path
        self.result = None
        self.error = None
        self.start()

    def run(self):
        try:
            self.result = get(self.address, self.path, timeout_s=20)
        except Exception as exc:  # handed to the test
            self.error = exc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_finishes_the_request_in_flight(start, signum):
    server = start("--workers", "2")
    server.wait_for_log("serving", count=2)
    slow = Request(server.address, "/slow?1.0")
    server.wait_for_log("slow request started")
    server.send_signal(signum)
    assert server.wait() == 0
    slow.join(10)
    assert slow.result == (200, "slow done"), slow.error
    assert "Stopped." in server.log()


def test_second_sigint_stops_at_once(start):
    server = start("--timeout-graceful-shutdown", "30")
    server.wait_for_log("serving")
    slow = Request(server.address, "/slow?20")
    server.wait_for_log("slow request started")
    server.send_signal(signal.SIGINT)
    server.wait_for_log("Shutting down gracefully")
    began = time.monotonic()
    server.send_signal(signal.SIGINT)
    assert server.wait(10) == 0
    assert time.monotonic() - began < 5
    slow.join(10)
    assert slow.result is None   # cut off, as asked


def test_sigquit_stops_at_once(start):
    server = start()
    server.wait_for_log("serving")
    Request(server.address, "/slow?20")
    server.wait_for_log("slow request started")
    began = time.monotonic()
    server.send_signal(signal.SIGQUIT)
    assert server.wait(10) == 0
    assert time.monotonic() - began < 5
    assert server.worker_pids() == []


def test_sighup_serves_new_code_without_refusing(start, app_dir):
    server = start("--workers", "2")
    server.wait_for_log("serving", count=2)
    old_workers = set(server.worker_pids())
    with Load(server.address, clients=4, path="/version") as load:
        wait_until(lambda: load.count() > 20, message="load running")
        # Another length, so that a cached bytecode file can never be taken for it.
        write_app(app_dir, version="v2-after-sighup")
        server.send_signal(signal.SIGHUP)
        wait_until(lambda: not old_workers & set(server.worker_pids())
                   and len(server.worker_pids()) == 2, timeout_s=15, message="all workers replaced")
        wait_until(lambda: load.seen()[-1:] == ["v2-after-sighup"], message="new code served")
        before = load.count()
        wait_until(lambda: load.count() > before + 20, message="load going on")
    assert load.failures == []
    assert get(server.address, "/version")[1] == "v2-after-sighup"


@pytest.mark.expect_errors("^cannot import 'procapp:app': RuntimeError: broken on purpose$",
                           r"^Traceback \(the app's frames\)",
                           r"^New worker \d+ failed to boot \(exit code 3\); the old workers keep serving")
def test_sighup_with_broken_code_keeps_the_old_workers(start, app_dir):
    server = start()
    server.wait_for_log("serving")
    worker = server.worker_pids()
    with open(os.path.join(app_dir, "procapp.py"), "w") as file:
        file.write("raise RuntimeError('broken on purpose')\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("the old workers keep serving")
    assert server.worker_pids() == worker
    assert get(server.address, "/version") == (200, "v1")


def test_ttin_and_ttou_change_the_worker_count(start):
    server = start("--workers", "1")
    server.wait_for_log("serving")
    server.send_signal(signal.SIGTTIN)
    wait_until(lambda: len(server.worker_pids()) == 2, message="a second worker")
    server.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(server.worker_pids()) == 1, message="back to one worker")
    # Never below one.  That SIGTTOU changes nothing, so nothing shows it was
    # handled; a SIGTTIN sent once it was delivered is handled after it and
    # says how many workers there are.
    server.send_signal(signal.SIGTTOU)
    wait_until(lambda: not signal_pending(server.pid, signal.SIGTTOU), message="SIGTTOU delivered")
    server.send_signal(signal.SIGTTIN)
    server.wait_for_log("SIGTTIN: ", count=2)
    assert re.findall(r"SIGTTIN: (\d+) worker", server.log()) == ["2", "2"]
    wait_until(lambda: len(server.worker_pids()) == 2, message="two workers")
    assert get(server.address)[0] == 200


def signal_pending(pid, signum):
    """Whether ``signum`` waits to be delivered to ``pid`` (Linux /proc)."""
    with open("/proc/%d/status" % pid) as status:
        masks = [int(line.split()[1], 16) for line in status if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signum - 1)) for mask in masks)


def test_sigterm_refuses_new_connections_while_requests_finish(start):
    server = start("--workers", "2")
    server.wait_for_log("serving", count=2)
    slow = Request(server.address, "/slow?3")
    server.wait_for_log("slow request started")
    server.send_signal(signal.SIGTERM)
    # Every process closed its listeners: refused, not queued where nobody accepts.
    wait_until(lambda: connect_refused(server.address), timeout_s=10, interval_s=0.01,
               message="new connections refused")
    assert slow.is_alive(), "refused only once the request in flight was done"
    slow.join(10)
    assert slow.result == (200, "slow done"), slow.error
    assert server.wait() == 0
