"""Differential: the ASGI suite's apps stepped by AppTask and by asyncio's own
Task (eager on 3.12+, where CPython has eager tasks; lazy before) must give
the client the same bytes.  AppTask is meant to be a faster Task, not a
different one."""

import asyncio
import re
import socket
import sys

import pytest

import selectserver.asgi
from tests.apps import asgi_apps
from tests.conftest import requires
from tests.integration.conftest import read_response

requires("starlette")
from tests.integration.test_frameworks_asgi import make_fastapi, make_starlette  # noqa: E402


class AsyncioTask:
    """AppTask's interface on top of asyncio.Task."""

    def __init__(self, loop, coro, on_done=None, name=None, after_step=None, context=None):
        self._loop, self._coro, self._on_done = loop, coro, on_done
        # asyncio.Task has no after-step hook: the end of the task stands in
        # for it (a pipelined request waits for the previous app to return).
        self._after_step = after_step
        self._exception = None

    def start(self):
        if sys.version_info >= (3, 12):
            task = asyncio.Task(self._coro, loop=self._loop, eager_start=True)
        else:
            task = self._loop.create_task(self._coro)
        task.add_done_callback(self._done)

    def take_exception(self):
        error, self._exception = self._exception, None
        return error

    def _done(self, task):
        if not task.cancelled():
            self._exception = task.exception()
        if self._on_done is not None:
            self._on_done(self)
        if self._after_step is not None:
            self._after_step()


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
    monkeypatch.setattr(selectserver.asgi, "AppTask", AsyncioTask)
    theirs = answers(serve, factory() if factory else app, requests)
    assert ours == theirs
    assert [status for status, _, _ in ours] == statuses
    # The same failure, logged once per failed request by each.
    assert len(errors) == statuses.count(500)
    assert len(server_errors.texts()) == 2 * len(errors)
