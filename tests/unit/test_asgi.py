"""The ASGI cycle on a fake connection: the exchange that is its own task,
and the context each app runs in."""

import asyncio
import contextvars

from selectserver.asgi import HTTPCycle
from selectserver.task import AppTask
from tests.unit.test_connection import make_conn  # noqa: F401 (a fixture)

REQUEST = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"

var = contextvars.ContextVar("var", default="unset")


def test_each_request_runs_in_its_own_context(make_conn):
    seen = []

    async def app(scope, receive, send):
        seen.append(var.get())
        var.set(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    conn, sock = make_conn(app)
    # Pipelined, so both run in one loop callback, one after the other.
    sock.reads.append(REQUEST % b"a" + REQUEST % b"b")
    make_conn.read(conn)
    sock.reads.append(REQUEST % b"c")
    make_conn.read(conn)
    assert seen == ["unset", "unset", "unset"]
    assert var.get() == "unset"


def test_the_exchange_is_the_current_task_of_its_app(make_conn):
    seen = []

    async def app(scope, receive, send):
        task = asyncio.current_task()
        seen.append(task)
        await asyncio.sleep(0)   # a later step, from the ready queue
        seen.append(asyncio.current_task())
        assert not task.done()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    conn, sock = make_conn(app)
    sock.reads.append(REQUEST % b"a")
    make_conn.read(conn)
    make_conn.in_loop(lambda: None)   # one more turn: the step after sleep(0)
    task = seen[0]
    assert isinstance(task, HTTPCycle) and isinstance(task, AppTask)
    assert seen == [task, task]
    assert task.done() and task.exception() is None
    assert task.get_name().startswith("AppTask-")
    assert sock.sent.endswith(b"\r\n2\r\nok\r\n0\r\n\r\n")

