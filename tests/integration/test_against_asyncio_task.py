"""Differential: the ASGI suite's apps stepped by their cycle (an AppTask) and
by asyncio's own Task (eager on 3.12+, where CPython has eager tasks; lazy
before) must give the client the same bytes.  AppTask is meant to be a faster
Task, not a different one."""

import asyncio
import re
import socket
import sys

import pytest

import selectserver.asgi
from selectserver.task import _CANCELLED, _DONE
from tests.apps import asgi_apps
from tests.conftest import requires
from tests.integration.conftest import read_response

requires("starlette")
from tests.integration.test_frameworks_asgi import make_fastapi, make_starlette  # noqa: E402


# The asyncio tasks started in place of cycles (the test checks there were some).
STARTED = []


def start_in_asyncio_task(cycle, exc=None):
    """The cycle's first step (``HTTPCycle._step``, which the handler runs
    in place of ``start()``) with asyncio's Task stepping the app, and the
    cycle told of its end as its own task would tell it."""
    loop = cycle.get_loop()
    STARTED.append(cycle)
    if sys.version_info >= (3, 12):
        task = asyncio.Task(cycle.get_coro(), loop=loop, eager_start=True)
    else:
        task = loop.create_task(cycle.get_coro())

    def done(task):
        # asyncio.Task has no after-step hook: the end of the task stands in
        # for it (a pipelined request waits for the previous app to return).
        if task.cancelled():
            cycle._finish(_CANCELLED, asyncio.CancelledError())
        else:
            cycle._finish(_DONE, task.exception())
        cycle._stepped()

    task.add_done_callback(done)


DATE = re.compile(rb"date: [^\r]*\r\n")

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
]

# name: (app, requests, the statuses they get, the errors the server logs for them)
APP_FAILED = r"^Exception in ASGI application \(GET /(boom)?\)"
APPS = {
    "hello": (asgi_apps.hello, REQUESTS[:1], [200], None),
    "echo": (asgi_apps.echo, REQUESTS, [200, 200, 200], None),
    "chunked": (asgi_apps.chunked_hello, REQUESTS[:1], [200], None),
    "stream": (asgi_apps.stream, REQUESTS[:1], [200], None),
    "sleepy": (asgi_apps.sleepy, REQUESTS[:1], [200], None),
    "raises": (asgi_apps.raises_before_start, REQUESTS[:1], [500], APP_FAILED),
    "no response": (asgi_apps.returns_without_response, REQUESTS[:1], [500],
                    r"^ASGI app returned without starting a response"),
    "starlette": (None, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                         b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
                         b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
                         b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"], [200, 200, 200, 500], APP_FAILED),
    "fastapi": (None, [b"GET /items/3?q=z HTTP/1.1\r\nHost: x\r\n\r\n",
                       b"GET /sync HTTP/1.1\r\nHost: x\r\n\r\n",
                       b"GET /timeout HTTP/1.1\r\nHost: x\r\n\r\n",
                       b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"], [200, 200, 200, 404], None),
}


def answers(serve, app, requests):
    server = serve(app)
    replies = []
    for request in requests:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(request)
            status, headers, body, _ = read_response(sock)
        headers.pop("date", None)
        replies.append((status, sorted(headers.items()), body))
    server.stop()   # an app may log its error after the response went out
    return replies


@pytest.mark.parametrize("name", list(APPS))
def test_apptask_and_asyncio_task_answer_alike(serve, monkeypatch, server_errors, name):
    app, requests, statuses, error = APPS[name]
    if error:
        server_errors.expect(error)
    factory = {"starlette": make_starlette, "fastapi": make_fastapi}.get(name)
    ours = answers(serve, factory() if factory else app, requests)
    errors = server_errors.texts()
    monkeypatch.setattr(selectserver.asgi.HTTPCycle, "_step", start_in_asyncio_task)
    del STARTED[:]
    theirs = answers(serve, factory() if factory else app, requests)
    assert len(STARTED) == len(requests)
    assert ours == theirs
    assert [status for status, _, _ in ours] == statuses
    # The same failure, logged once per failed request by each.
    assert len(errors) == statuses.count(500)
    assert len(server_errors.texts()) == 2 * len(errors)
